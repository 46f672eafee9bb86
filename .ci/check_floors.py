"""Check that the floors declared in pyproject.toml are the ones the min-deps job installs.

Every requirement of ``dependencies`` and of the optional groups below needs a
``>=`` floor, and ``.ci/min-deps.txt`` must pin each of them (``name==floor``)
and nothing else. Prints the minor version of ``requires-python``'s floor
(e.g. ``3.9``), the Python the min-deps job runs on. Needs Python 3.11+ (tomllib).
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "min-deps.txt"
# Optional groups tested at their floors; "docs" is built with current releases only.
CHECKED_EXTRAS = ("plot", "dask", "test")

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
FLOOR = re.compile(r">=\s*([0-9][0-9.]*)")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([0-9][0-9.]*)\s*$")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version):
    """Release tuple without trailing zeros: 1.22 and 1.22.0 compare equal."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    errors = []
    floors = {}
    requirements = list(project["dependencies"])
    for extra in CHECKED_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        name, _, specifier = REQUIREMENT.match(requirement).groups()
        floor = FLOOR.search(specifier)
        if floor is None:
            errors.append(f"pyproject.toml: {requirement!r} declares no '>=' floor")
            continue
        previous = floors.setdefault(canonical(name), floor.group(1))
        if release(previous) != release(floor.group(1)):
            errors.append(f"pyproject.toml: two floors for {name}: {previous}, {floor.group(1)}")

    pins = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin = PIN.match(line)
        if pin is None:
            errors.append(f"{CONSTRAINTS.name}:{number}: not of the form name==version: {line!r}")
            continue
        pins[canonical(pin.group(1))] = pin.group(2)

    for name, floor in sorted(floors.items()):
        if name not in pins:
            errors.append(f"{CONSTRAINTS.name}: no pin for {name} (pyproject floor {floor})")
        elif release(pins[name]) != release(floor):
            errors.append(f"{name}: pyproject floor {floor}, but {CONSTRAINTS.name} "
                          f"installs {pins[name]}")
    for name in sorted(set(pins) - set(floors)):
        errors.append(f"{CONSTRAINTS.name}: {name} is pinned but pyproject declares no floor")

    python = re.fullmatch(r"\s*>=\s*(3\.[0-9]+)(\.0)?\s*", project["requires-python"])
    if python is None:
        errors.append(f"requires-python {project['requires-python']!r} is not '>=3.N'")

    if errors:
        sys.exit("\n".join(["Declared floors and tested floors differ:"] + errors))
    print(python.group(1))


if __name__ == "__main__":
    main()
