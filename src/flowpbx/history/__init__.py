"""Call history: step records and progress reports, drained from the call store's streams
into SQL by the history writer, and the queries the REST API answers from."""
