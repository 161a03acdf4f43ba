"""Advice on YAML parser errors: the line to change, and how.

When PyYAML stops, its position is often past the mistake: a key written without its ':' runs
on into the next line, a key indented too little is only noticed at the line after it. The
functions here read the lines around that position and propose advice ("add ':' after 'type'")
with an edit that would mend the text. `yamlsource.parse` gives the advice only if the mended
text parses further, then reads on, so one mistake does not hide the others.

Pure functions: lines of text and the parser's error in, candidate advice out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from flowpbx.errors import Mark
from flowpbx.language.yaml_lines import (
    COLON_GLUED,
    WORD,
    Advice,
    Edit,
    Line,
    alike,
    block_scalar,
    enclosing,
    facts,
    indent_message,
    indented,
    key_like,
    lines_under,
    next_content,
    previous_content,
    read_lines,
    reindent,
    shift_lines,
    short,
    spaces,
    usual_step,
)


@dataclass(frozen=True, slots=True)
class ParserError:
    """What PyYAML reported, with 1-based positions."""

    problem: str
    line: int
    column: int
    context: str = ""
    context_line: int = 0
    context_column: int = 0


# --- Advice for parser errors ----------------------------------------------------------------


def syntax_advice(texts: list[str], error: ParserError) -> Iterator[Advice]:
    """Candidate advice for a parser error, most likely first. Advice with edits is meant to be
    tried (the edited text should parse further); advice without edits stands on its own."""
    lines = read_lines(texts)
    if not lines:
        return
    at = min(error.line, len(lines)) - 1  # PyYAML may stop just past the last line
    if "quoted scalar" in error.context and error.context_line:
        yield from _unclosed_quote(lines, error.context_line - 1, error.context_column - 1)
        return
    yield from _quote_closed_later(lines, at, error.column - 1)
    problem = error.problem
    if "could not find expected ':'" in problem and error.context_line:
        yield from _keyless(lines, error.context_line - 1)
    elif "mapping values are not allowed" in problem:
        for j in _keyless_before(lines, at):
            yield from _keyless(lines, j)
        yield from _shallow_leaf(lines, at)
        yield from _dash_entry_off(lines, at)
        yield from _too_deep(lines, at)
    elif "did not find expected key" in problem and _starts_at(lines[at], error.column - 1):
        yield from _block_text_line(lines, at)
        yield from _shallow_leaf(lines, at)
        yield from _first_key_off(lines, at)
        yield from _dedented_node(lines, at)
        yield from _misaligned(lines, at)
        yield from _stray_dash(lines, at)
        yield from _dash_off(lines, at)
    elif "did not find expected key" in problem:
        yield from _quote_inside(lines, at, error.column - 1)
    elif "expected '-' indicator" in problem and error.context_line:
        yield from _dash_entry_off(lines, at)
        yield from _dash_misaligned(lines, error.context_line - 1, at)
        yield from _dash_list(lines, error.context_line - 1, at)
        yield from _stray_dash(lines, error.context_line - 1)
        yield from _misaligned(lines, at)
    elif "expected <document start>" in problem:
        yield from _first_line_indented(lines, at)


def _starts_at(line: Line, column: int) -> bool:
    """Whether a 0-based column is where the line's first item starts."""
    return column == (line.indent if line.dash else line.key_col)


def _opening_quote(line: Line) -> tuple[str, int] | None:
    """The quote a line's value opens and does not close on the line, and its column."""
    value_at = line.key_col + len(line.key) if line.key is not None else line.key_col
    rest = line.text[value_at:].lstrip(" :")
    if not rest or rest[0] not in "'\"":
        return None
    quote = rest[0]
    column = len(line.text) - len(rest)
    body = rest[1:].replace("''", "") if quote == "'" else re.sub(r"\\.", "", rest[1:])
    return None if quote in body else (quote, column)


_NUMBER_OR_FLAG = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?|true|false", re.ASCII)


def _close_quote(line: Line, quote: str, column: int) -> Iterator[Advice]:
    mark = Mark(line.number, column + 1)
    rest = line.text[column + 1 :].strip()
    known = facts()
    if _NUMBER_OR_FLAG.fullmatch(rest) and line.key in known.keys and line.key not in known.texts:
        message = f"remove the {quote} before {rest}: numbers, true and false need no quotes"
        yield Advice(message, mark, (Edit(line.number, column + 1, remove=1),))
        return
    message = f"close the quote: this text starts with {quote} but does not end with {quote}"
    end = len(line.text.rstrip())
    yield Advice(message, mark, (Edit(line.number, end + 1, insert=quote),))


def _unclosed_quote(lines: list[Line], at: int, column: int) -> Iterator[Advice]:
    line = lines[at] if 0 <= at < len(lines) else None
    quote = line.text[column : column + 1] if line else ""
    if line is None or quote not in ("'", '"'):
        return
    yield from _close_quote(line, quote, column)
    message = f"close the quote: the {quote} opened here is never closed"
    yield Advice(message, Mark(line.number, column + 1))


def _quote_closed_later(lines: list[Line], at: int, column: int) -> Iterator[Advice]:
    """A quote left open on an earlier line, closed by the next quote the text holds."""
    for j in range(at - 1, max(-1, at - 200), -1):
        line = lines[j]
        if not line.content:
            continue
        opening = _opening_quote(line)
        if opening is not None:
            if opening[0] in lines[at].text[:column]:
                yield from _close_quote(line, *opening)
            return
        if "'" in line.text or '"' in line.text:
            return


def _keyless_before(lines: list[Line], at: int) -> list[int]:
    """The lines without a key just above `at` (nearest first): what ran into its ':'."""
    found = []
    j = previous_content(lines, at)
    while j is not None and lines[j].key is None:
        found.append(j)
        if lines[j].dash:
            break  # `- date 01-01`: the entry starts here
        j = previous_content(lines, j)
    return found


def _keyless(lines: list[Line], at: int) -> Iterator[Advice]:
    """A line with no 'key:' where one is expected: a missing ':' or space, or a text's next
    line not indented under its key."""
    line = lines[at] if 0 <= at < len(lines) else None
    if line is None or not line.content or line.key is not None:
        return
    words = line.text[line.key_col :].split(None, 1)
    if not words:
        return
    word, value = words[0], words[1].strip() if len(words) > 1 else ""
    mark = Mark(line.number, line.key_col + 1)
    glued = COLON_GLUED.fullmatch(word + (" " + value if value else ""))
    if glued and key_like(glued["key"], glued["value"].strip()):
        key = glued["key"]
        written = short(glued["value"])
        message = f"add a space after ':' in '{key}:{written}' (write '{key}: {written}')"
        column = line.key_col + len(key) + 2
        yield Advice(message, mark, (Edit(line.number, column, insert=" "),))
        return
    following = next_content(lines, at)
    opens_block = following is not None and lines[following].indent > line.key_col
    if value:
        missing_colon = key_like(word, value)
    else:
        missing_colon = bool(WORD.fullmatch(word)) and (opens_block or word in facts().keys)
    if missing_colon:
        written = f"{word}: {short(value)}" if value else f"{word}:"
        message = f"add ':' after '{word}' (write '{written}')"
        edit = Edit(line.number, line.key_col + len(word) + 1, insert=":")
        yield Advice(message, mark, (edit,))
        return
    if not line.dash:
        yield from _continuation(lines, at)


def _continuation(lines: list[Line], at: int) -> Iterator[Advice]:
    """A text that goes on to a line indented no more than its key."""
    j = previous_content(lines, at)
    while j is not None and lines[j].key is None and not lines[j].dash:
        j = previous_content(lines, j)
    if j is None or lines[j].key is None or lines[at].indent > lines[j].key_col:
        return
    owner = lines[j]
    block = block_scalar(owner.value)
    if not (owner.leaf or block):
        return
    key = str(owner.key)
    column = owner.key_col + usual_step(lines)
    edits = tuple(
        Edit(lines[k].number, 1, insert=" " * (column - lines[k].indent))
        for k in range(j + 1, at + 1)
        if lines[k].content and lines[k].indent < column
    )
    if block:
        message = (
            f"this line is part of the text of '{key}' (line {owner.number}): "
            f"indent it more than '{key}'"
        )
    else:
        message = (
            f"this line goes on with the text of '{key}' (line {owner.number}): indent it "
            f"more than '{key}', or put the whole text on line {owner.number}"
        )
    yield Advice(message, Mark(lines[at].number, lines[at].indent + 1), edits)


def _shallow_leaf(lines: list[Line], at: int) -> Iterator[Advice]:
    """A key indented less than the keys around it, noticed at the next line at their
    indentation: YAML took the key, and what is under it, out of their mapping."""
    line = lines[at]
    if line.key is None or line.dash:
        return
    x = next(
        (j for j in range(at - 1, -1, -1) if lines[j].content and lines[j].key_col < line.key_col),
        None,
    )
    if x is None or lines[x].key is None or lines[x].dash:
        return
    culprit = lines[x]
    if not key_like(str(culprit.key), culprit.value if culprit.leaf else ""):
        return
    # The mapping of the line PyYAML stopped at was open above, and the culprit is one of its keys.
    above = next(
        (
            lines[j]
            for j in range(x - 1, -1, -1)
            if lines[j].content and lines[j].key_col <= line.key_col
        ),
        None,
    )
    sibling = (
        above is not None
        and above.key is not None
        and above.key_col == line.key_col
        and alike(str(culprit.key), above.key)
    )
    q = previous_content(lines, x)
    before = lines[q] if q is not None else None
    first = (
        culprit.leaf
        and x == previous_content(lines, at)
        and before is not None
        and before.header
        and (
            before.key_col == culprit.key_col
            or line.key_col - before.key_col
            == usual_step(lines)
            != culprit.key_col - before.key_col
        )
    )
    if not (sibling or first):
        return
    chain = enclosing(lines, x - 1, line.key_col)
    message = indent_message(str(culprit.key), culprit.indent, chain, line.key_col)
    edit = reindent(culprit, line.key_col)
    yield Advice(message, Mark(culprit.number, culprit.key_col + 1), (edit,))


def _too_deep(lines: list[Line], at: int) -> Iterator[Advice]:
    """`key: value` indented more than the `key: value` line above it."""
    line = lines[at]
    p = previous_content(lines, at)
    if line.key is None or line.dash or p is None:
        return
    above = lines[p]
    if not above.leaf or above.key_col >= line.key_col or not key_like(line.key, line.value):
        return
    chain = enclosing(lines, p, above.key_col)
    message = indent_message(line.key, line.indent, chain, above.key_col)
    yield Advice(message, Mark(line.number, line.key_col + 1), (reindent(line, above.key_col),))


def _first_key_off(lines: list[Line], at: int) -> Iterator[Advice]:
    """The first key under a `key:` line indented differently from the keys after it (YAML
    takes the first key's indentation for all of them)."""
    line = lines[at]
    if line.key is None or line.dash:
        return
    for h in range(at - 1, -1, -1):
        header = lines[h]
        if not header.content or not header.header or header.key_col >= line.key_col:
            continue
        f = next_content(lines, h)
        if f is None or f >= at:
            return
        first = lines[f]
        if first.key is None or first.dash or not alike(first.key, line.key):
            continue
        if any(lines[k].content and lines[k].indent < first.indent for k in range(f, at)):
            continue
        after = next((j for j in range(at + 1, len(lines)) if lines[j].content), None)
        agreed = after is not None and lines[after].key_col == line.key_col
        usual = line.key_col - header.key_col == usual_step(lines) != first.key_col - header.key_col
        if first.key_col == line.key_col or not (agreed or usual):
            return  # one line against one: the line PyYAML stopped at is the odd one
        chain = enclosing(lines, h, line.key_col)
        message = indent_message(first.key, first.indent, chain, line.key_col)
        below = next_content(lines, f)
        alone = below is not None and lines[below].indent == first.indent  # its keys are right
        edits = shift_lines([first] if alone else lines[f:at], line.key_col - first.key_col)
        yield Advice(message, Mark(first.number, first.key_col + 1), edits)
        return


def _dedented_node(lines: list[Line], at: int) -> Iterator[Advice]:
    """A node written at the start of the line, after 'nodes:': it left the nodes."""
    column = lines[at].key_col
    nodes_at: int | None = None
    for j in range(at - 1, -1, -1):
        if lines[j].content and lines[j].key_col == 0 and lines[j].key == "nodes":
            nodes_at = j
            break
    if nodes_at is None:
        return
    first = next_content(lines, nodes_at)
    if first is None or lines[first].key_col != column:
        return
    culprit = next(
        (
            j
            for j in range(at - 1, nodes_at, -1)
            if lines[j].content and lines[j].key_col == 0 and lines[j].header
        ),
        None,
    )
    if culprit is None or lines[culprit].key in facts().top:
        return
    line = lines[culprit]
    message = indent_message(str(line.key), 0, ["nodes"], column)
    yield Advice(message, Mark(line.number, 1), (reindent(line, column),))


def _open_columns(lines: list[Line], at: int) -> list[int]:
    """The columns of the mappings still open at line `at`, innermost first."""
    columns: list[int] = []
    limit: int | None = None
    for j in range(at - 1, -1, -1):
        line = lines[j]
        if line.content and (limit is None or line.key_col < limit):
            columns.append(line.key_col)
            limit = line.key_col
            if limit == 0:
                break
    return columns


def _misaligned(lines: list[Line], at: int) -> Iterator[Advice]:
    """A key whose indentation matches none of the mappings around it."""
    line = lines[at]
    if line.key is None or line.dash:
        return
    columns = _open_columns(lines, at)
    higher = [c for c in columns if c > line.key_col]
    lower = [c for c in columns if c < line.key_col]
    candidates = ([min(higher)] if higher else []) + ([max(lower)] if lower else [])

    def alike_at(column: int) -> bool:
        sibling = next(
            (
                lines[j].key
                for j in range(at - 1, -1, -1)
                if lines[j].content and lines[j].key is not None and lines[j].key_col == column
            ),
            None,
        )
        return sibling is not None and line.key is not None and alike(sibling, line.key)

    candidates.sort(key=lambda column: not alike_at(column))
    p = previous_content(lines, at)
    for column in candidates:
        chain = enclosing(lines, p if p is not None else at, column)
        message = indent_message(line.key, line.indent, chain, column)
        yield Advice(message, Mark(line.number, line.key_col + 1), (reindent(line, column),))


def _quote_inside(lines: list[Line], at: int, column: int) -> Iterator[Advice]:
    """A text in quotes that holds the same quote: the first one inside ends it."""
    line = lines[at]
    value_at = line.key_col + len(line.key or "")
    rest = line.text[value_at:].lstrip(" :")
    start = len(line.text) - len(rest)
    if not rest or rest[0] not in "'\"" or rest[0] not in line.text[start + 1 : column]:
        return
    quote = rest[0]
    other = "'" if quote == '"' else '"'
    message = (
        f"this text is in {quote} quotes and holds a {quote} too, which ends it; "
        f"put the text in {other} quotes instead"
    )
    yield Advice(message, Mark(line.number, start + 1))


def _list_name(lines: list[Line], index: int, indent: int) -> str:
    """'the other entries of 'holidays'': how to name the entries of the '-' list whose entries
    are at `indent`, looking up from line `index`."""
    for j in range(index, -1, -1):
        line = lines[j]
        if not line.content or line.dash or line.indent > indent:
            continue
        if line.header and line.key is not None:
            return f"the other entries of '{line.key}'"
        break
    return "the other entries"


def _dash_entry_off(lines: list[Line], at: int) -> Iterator[Advice]:
    """A '- key: value' entry indented differently from the other entries of its list, noticed
    at its second line."""
    line, p = lines[at], previous_content(lines, at)
    if p is None or line.key is None or line.dash or not lines[p].dash:
        return
    entry = lines[p]
    if entry.key_col == line.key_col:
        return
    others = [
        j
        for j in (*range(p - 1, -1, -1), *range(at + 1, len(lines)))
        if lines[j].content and lines[j].dash and abs(lines[j].indent - entry.indent) <= 2
    ]
    if not others or lines[others[0]].key_col != line.key_col:
        return
    column = lines[others[0]].indent
    where = _list_name(lines, others[0], column)
    message = f"this '-' {indented(entry.indent)}; {where} are at {column}"
    edit = Edit(entry.number, 1, remove=entry.indent, insert=" " * column)
    yield Advice(message, Mark(entry.number, entry.indent + 1), (edit,))


def _stray_dash(lines: list[Line], at: int) -> Iterator[Advice]:
    """A '-' before a key whose neighbours are key: value lines without '-'."""
    line = lines[at]
    if not line.dash or line.key is None:
        return
    h = next(
        (
            j
            for j in range(at - 1, -1, -1)
            if lines[j].content and not lines[j].dash and lines[j].indent < line.indent
        ),
        -1,
    )
    end = next(
        (
            j
            for j in range(at + 1, len(lines))
            if lines[j].content and lines[j].indent <= (lines[h].indent if h >= 0 else -1)
        ),
        len(lines),
    )
    for other in lines[h + 1 : end]:
        if other is line or not other.content or not other.dash:
            continue
        if other.key == line.key or other.indent == line.indent:
            return  # an entry of a real '-' list (indented wrongly, perhaps)
    above = next(
        (
            lines[j]
            for j in range(at - 1, -1, -1)
            if lines[j].content and lines[j].indent <= line.indent
        ),
        None,
    )
    below = next(
        (
            lines[j]
            for j in range(at + 1, len(lines))
            if lines[j].content and lines[j].indent <= line.indent
        ),
        None,
    )
    beside_above = above is not None and above.key is not None and above.key_col == line.indent
    beside_below = (
        below is not None
        and below.key is not None
        and not below.dash
        and below.indent == line.indent
    )
    if not (beside_above or beside_below):
        return
    message = f"remove the '-' before '{line.key}': the keys around it have no '-'"
    edit = Edit(line.number, line.indent + 1, remove=line.key_col - line.indent)
    yield Advice(message, Mark(line.number, line.indent + 1), (edit,))


def _dash_off(lines: list[Line], at: int) -> Iterator[Advice]:
    """A '-' entry indented differently from the entry before it."""
    line = lines[at]
    if not line.dash:
        return
    for j in range(at - 1, -1, -1):
        other = lines[j]
        if not other.content:
            continue
        if other.dash and other.indent != line.indent:
            where = _list_name(lines, j, other.indent)
            message = f"this '-' {indented(line.indent)}; {where} are at {other.indent}"
            by = other.indent - line.indent
            under = lines_under(lines, at)
            # Move the entry's other lines too, unless they already line up with the others.
            keys_right = len(under) > 1 and under[1].indent == other.key_col
            yield Advice(
                message,
                Mark(line.number, line.indent + 1),
                shift_lines(under[:1] if keys_right else under, by),
            )
            return
        if not other.dash and (
            other.indent < line.indent or (other.indent == line.indent and other.header)
        ):
            return  # out of the list


def _block_text_line(lines: list[Line], at: int) -> Iterator[Advice]:
    """A line of a | or > text indented less than the text's first line."""
    line, k = lines[at], previous_content(lines, at)
    if k is None or lines[k].key is None or not block_scalar(lines[k].value):
        return
    owner = lines[k]
    if line.key is not None and key_like(line.key, line.value):
        return  # a key indented wrongly, not a line of the text
    body = next((lines[j] for j in range(k + 1, at) if lines[j].text.strip()), None)
    if body is None or not owner.key_col < line.indent < body.indent:
        return
    rest = [
        lines[j] for j in range(k + 1, len(lines)) if lines[j].text.strip() and lines[j] is not body
    ]
    rest = rest[: next((i for i, r in enumerate(rest) if r.indent <= owner.key_col), len(rest))]
    if len(rest) > 1 and all(r.indent == line.indent for r in rest):
        message = (
            f"the lines of the text of '{owner.key}' must line up: the first one is indented "
            f"{spaces(body.indent)}, the others {line.indent}"
        )
        edit = Edit(body.number, 1, remove=body.indent - line.indent)
        yield Advice(message, Mark(body.number, body.indent + 1), (edit,))
        return
    message = (
        f"the lines of the text of '{owner.key}' must line up: this one is indented "
        f"{spaces(line.indent)}, the first one {body.indent}"
    )
    edit = Edit(line.number, 1, insert=" " * (body.indent - line.indent))
    yield Advice(message, Mark(line.number, line.indent + 1), (edit,))


def _first_line_indented(lines: list[Line], at: int) -> Iterator[Advice]:
    """The first key of the file indented, the next ones not."""
    first = next_content(lines, -1)
    if first is None or first >= at or lines[first].key is None or lines[at].key_col != 0:
        return
    line = lines[first]
    message = indent_message(str(line.key), line.indent, [], 0)
    yield Advice(message, Mark(line.number, line.key_col + 1), (reindent(line, 0),))


def _dash_misaligned(lines: list[Line], start: int, at: int) -> Iterator[Advice]:
    """An entry of a '-' list indented differently from the entries before it."""
    if not 0 <= start < len(lines) or not lines[start].dash or not lines[at].dash:
        return
    first, line = lines[start], lines[at]
    if line.indent > first.indent:
        culprit, column = at, first.indent  # this entry goes too far right
    else:
        culprit, column = start, line.indent  # the entries before it went too far right
    where = _list_name(lines, start, first.indent)
    if culprit == start:
        where = where.replace("the other entries", "the next entries")
    wrong = lines[culprit]
    message = f"this '-' {indented(wrong.indent)}; {where} are at {column}"
    if culprit == at:
        moved = lines_under(lines, at)
        if len(moved) > 1 and moved[1].indent == first.key_col:
            moved = moved[:1]  # the entry's other lines line up with the other entries already
    else:
        moved = lines[start:at]
    yield Advice(
        message, Mark(wrong.number, wrong.indent + 1), shift_lines(moved, column - wrong.indent)
    )


def _dash_list(lines: list[Line], start: int, at: int) -> Iterator[Advice]:
    """A '-' list whose later entries have no '-': the '-' are usually the mistake."""
    if not 0 <= start < len(lines) or not lines[start].dash:
        return
    first = lines[start]
    chain = enclosing(lines, start - 1, first.indent + 1)
    if chain and chain[-1] not in facts().mappings:
        return
    edits = []
    for j in range(start, at):
        line = lines[j]
        if line.content and line.dash and line.indent == first.indent:
            edits.append(Edit(line.number, line.indent + 1, remove=line.key_col - line.indent))
    if chain:
        message = f"write '{chain[-1]}' as key: value lines without '-'"
    else:
        message = "remove the '-': a flow's top-level keys are key: value lines without '-'"
    yield Advice(message, Mark(first.number, first.indent + 1), tuple(edits))
