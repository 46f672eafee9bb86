"""Text shared across flexsk: unit keys as text, and plain-text tables."""

__all__ = ["key_name", "format_table"]


def key_name(key):
    """A unit key as text: a unit name, or a tuple of unit names joined with ``+``.

    Parameters
    ----------
    key : str or tuple of str
        A key of FlexTuner's ``validation_scores_``.

    Returns
    -------
    str

    Examples
    --------
    >>> from flexsk.bench import key_name
    >>> key_name(("fc1", "fc2")), key_name("conv1")
    ('fc1+fc2', 'conv1')
    """
    return "+".join(key) if isinstance(key, tuple) else str(key)


def format_table(headers, rows):
    """A plain-text table with aligned columns (markdown compatible).

    Parameters
    ----------
    headers : sequence
        The column titles.
    rows : iterable of sequence
        The rows, each with one cell per column; cells are shown with ``str``.

    Returns
    -------
    str
        The table, one line per row, with a rule under the titles.

    Examples
    --------
    >>> from flexsk.bench import format_table
    >>> print(format_table(["strategy", "accuracy"], [["flex", "0.91"], ["ft-all", "0.9"]]))
    | strategy | accuracy |
    |----------|----------|
    | flex     | 0.91     |
    | ft-all   | 0.9      |
    """
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
