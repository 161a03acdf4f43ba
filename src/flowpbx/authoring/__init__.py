"""Tools for the people who write flows: diagrams of a flow and scenario tests of it."""
