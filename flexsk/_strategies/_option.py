"""A strategy's setting, declared once: its name, default, constraint and docstring."""

from dataclasses import dataclass

__all__ = ["Option"]


@dataclass(frozen=True)
class Option:
    """A setting a strategy's schedule takes.

    A built-in strategy's options are :class:`~flexsk.FlexTuner` parameters,
    whose default, validation and docstring entry come from here. Yours are
    settings of your :class:`Strategy`: ``Strategy(..., options=(Option(...),))``,
    set with ``Strategy(..., name=value)`` or ``set_params(strategy__name=value)``,
    and searchable by :class:`~sklearn.model_selection.GridSearchCV`.

    Parameters
    ----------
    name : str
        The keyword the schedule receives.
    default : object
        Its value unless one is set.
    constraints : tuple
        What values are valid, in scikit-learn's ``_parameter_constraints``
        vocabulary (``Interval``, ``StrOptions``, types, ``None``).
    kind : str
        The type part of its numpydoc entry, e.g. ``"int"`` or ``'int or "auto"'``.
    doc : str
        What it does, for the docstring.

    Examples
    --------
    >>> from numbers import Integral
    >>> from sklearn.utils._param_validation import Interval
    >>> from flexsk.strategies import Option
    >>> Option("k", 2, (Interval(Integral, 1, None, closed="left"),), "int",
    ...        "Units the schedule keeps.")
    Option('k', default=2)
    """

    name: str
    default: object
    constraints: tuple
    kind: str
    doc: str

    def __repr__(self):
        return f"Option({self.name!r}, default={self.default!r})"

    def docstring(self, indent="    "):
        """Its numpydoc entry: ``name : kind, default=...`` and the text, wrapped."""
        import textwrap

        body = textwrap.fill(self.doc, width=79 - 2 * len(indent),
                             initial_indent=indent * 2, subsequent_indent=indent * 2)
        default = f'"{self.default}"' if isinstance(self.default, str) else repr(self.default)
        return f"{indent}{self.name} : {self.kind}, default={default}\n{body}"


Option.__module__ = "flexsk.strategies"  # documented, and named in errors, there
