"""The roles' argument specs say what each entry point uses, with the defaults of defaults/main.yml.

Ansible checks a role's variables against meta/argument_specs.yml when an entry point is entered
(include_role/import_role tasks_from), and ansible-doc shows that file to the user. These tests keep
it true as the task files change:

- every default declared equals the one in defaults/main.yml, and every variable of
  defaults/main.yml is declared by some entry point;
- every public variable (``rollout_*``, ``app_service_*``, ``app_backup_*``) an entry point reads -
  in its task files, the files they include, vars/main.yml and defaults/main.yml values they read,
  and the defaults of a collection role they include - is declared by that entry point (or by
  ``main``). A variable the role sets itself (set_fact, register, ``vars:``) is not an input, unless
  its new value starts from the variable's own value (``x: "{{ x | default(...) }}"``): then a
  caller may give it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.nodes
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = REPO / "roles"
PREFIXES = {"release": ("rollout_",), "app_service": ("app_service_",), "app_backup": ("app_backup_",)}
# Keys whose string value is a bare Jinja expression, not a template.
CONDITIONALS = {"when", "that", "changed_when", "failed_when", "until"}
INCLUDES = {"include_tasks", "import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks"}
ROLE_INCLUDES = {"include_role", "import_role", "ansible.builtin.include_role", "ansible.builtin.import_role"}
SET_FACT = {"set_fact", "ansible.builtin.set_fact"}
# The role templates hold regexes ("\\."), which Jinja's string unescaping warns about.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_ENV = jinja2.Environment()
_PUBLIC = re.compile(r"^(rollout|app_service|app_backup)_[a-z0-9_]+$")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- reading Jinja


def names_in_expression(expr: str) -> set[str]:
    """Public-looking variable names an expression reads: names, ``x.name`` and ``x['name']``."""
    try:
        tree = _ENV.parse("{{ (" + expr + ") }}")
    except jinja2.TemplateSyntaxError:
        tree = _ENV.parse(expr)
    return _names(tree)


def names_in_template(text: str) -> set[str]:
    return _names(_ENV.parse(text)) if "{{" in text or "{%" in text else set()


def _names(tree: jinja2.nodes.Node) -> set[str]:
    found = set()
    for node in tree.find_all((jinja2.nodes.Name, jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        if isinstance(node, jinja2.nodes.Name) and node.ctx == "load":
            found.add(node.name)
        elif isinstance(node, jinja2.nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const) \
                and isinstance(node.arg.value, str) \
                and not (isinstance(node.node, jinja2.nodes.Name) and node.node.name == "groups"):
            found.add(node.arg.value)
    return {n for n in found if _PUBLIC.match(n) or n.startswith("_")}


def names_in_value(value, conditional: bool = False) -> set[str]:
    if isinstance(value, str):
        return names_in_expression(value) if conditional and "{{" not in value else names_in_template(value)
    if isinstance(value, list):
        return set().union(*(names_in_value(v, conditional) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(names_in_value(v) for v in value.values())) if value else set()
    return set()


# --------------------------------------------------------------------------- reading task files


class TaskFile:
    """What one task file reads, sets and includes."""

    def __init__(self, path: Path) -> None:
        self.reads: set[str] = set()
        self.sets: set[str] = set()
        self.inputs_with_fallback: set[str] = set()  # x: "{{ x | default(...) }}"
        self.includes: set[str] = set()
        self.roles: set[str] = set()
        for task in load_yaml(path) or []:
            self._task(task, path)

    def _task(self, task: dict, path: Path) -> None:
        for key in ("block", "rescue", "always"):
            for sub in task.get(key) or []:
                self._task(sub, path)
        for key, value in task.items():
            if key in ("block", "rescue", "always"):
                continue
            if key == "vars" and isinstance(value, dict):
                self._assign(value)
            elif key in SET_FACT and isinstance(value, dict):
                self._assign({k: v for k, v in value.items() if k != "cacheable"})
            elif key == "register":
                self.sets.add(value)
            elif key in INCLUDES:
                target = value.get("file") if isinstance(value, dict) else value
                self.reads |= names_in_value(target)
                # "{{ app_service_manager }}_start.yml" may be any of the files it matches; a name that is
                # only a template (a hook) is the user's file, not the role's.
                pattern = re.sub(r"\{\{.*?\}\}", "*", target)
                if pattern.strip("*"):
                    self.includes |= {p.name for p in path.parent.glob(pattern)}
            elif key in ROLE_INCLUDES:
                self.roles.add(value["name"].split(".")[-1])
                self.reads |= names_in_value({k: v for k, v in value.items() if k != "name"})
            else:
                self.reads |= names_in_value(value, conditional=key in CONDITIONALS)

    def _assign(self, mapping: dict) -> None:
        for name, value in mapping.items():
            used = names_in_value(value)
            if name in used:
                self.inputs_with_fallback.add(name)
            self.sets.add(name)
            self.reads |= used


@lru_cache(maxsize=None)
def task_file(path: Path) -> TaskFile:
    return TaskFile(path)


def var_file_reads(path: Path) -> dict[str, set[str]]:
    """name -> the names its value reads, for a defaults/ or vars/ file."""
    return {name: names_in_value(value) for name, value in (load_yaml(path) or {}).items()}


def uses(role: str, entry: str) -> set[str]:
    """The public variables entry point ``entry`` of ``role`` reads and does not set itself."""
    role_dir = ROLES / role
    seen, todo = set(), [f"{entry}.yml"]
    reads, sets, fallbacks, roles = set(), set(), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tf = task_file(role_dir / "tasks" / name)
        reads |= tf.reads
        sets |= tf.sets
        fallbacks |= tf.inputs_with_fallback
        roles |= tf.roles
        todo += sorted(tf.includes)
    # vars/ and defaults/ values are evaluated where they are read: follow them.
    derived = {**var_file_reads(role_dir / "defaults" / "main.yml"), **var_file_reads(role_dir / "vars" / "main.yml")}
    for other in roles - {role}:
        reads |= set().union(*var_file_reads(ROLES / other / "defaults" / "main.yml").values())
    todo = sorted(reads)
    while todo:
        name = todo.pop()
        for more in derived.get(name, ()):
            if more not in reads:
                reads.add(more)
                todo.append(more)
    public = {n for n in reads if n.startswith(PREFIXES[role])}
    return public - (sets - fallbacks)


def playbook_variables() -> set[str]:
    """The ``rollout_*`` variables the collection's playbooks read or set around the release role.

    They are declared by ``context``, the entry point every phase playbook enters first: that is where
    ansible-doc shows a phase's inputs (rollout_mode, rollout_defer_failure, rollout_canary_weight...).
    """
    found: set[str] = set()
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play in load_yaml(path) or []:
            found |= {k for k in (play.get("vars") or {}) if k.startswith("rollout_")}
            body = TaskFile.__new__(TaskFile)
            body.reads, body.sets, body.inputs_with_fallback, body.includes, body.roles = set(), set(), set(), set(), set()
            for key in ("pre_tasks", "tasks", "post_tasks"):
                for task in play.get(key) or []:
                    body._task(task, path)
            found |= {n for n in body.reads - (body.sets - body.inputs_with_fallback) if n.startswith("rollout_")}
    return found


# --------------------------------------------------------------------------- the specs


def specs(role: str) -> dict[str, dict]:
    return load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]


def entry_points(role: str) -> list[str]:
    return list(specs(role))


CASES = [(role, entry) for role in PREFIXES for entry in entry_points(role)]


@pytest.mark.parametrize("role,entry", CASES, ids=[f"{r}:{e}" for r, e in CASES])
def test_every_variable_an_entry_point_reads_is_declared_there(role, entry):
    declared = set(specs(role)[entry].get("options") or {}) | set(specs(role).get("main", {}).get("options") or {})
    missing = uses(role, entry) - declared
    if (role, entry) == ("release", "context"):
        missing |= playbook_variables() - declared
    assert not missing, (f"roles/{role}/tasks/{entry}.yml (with what it includes) reads {sorted(missing)}, which "
                         f"roles/{role}/meta/argument_specs.yml does not declare for entry point {entry!r}")


@pytest.mark.parametrize("role", PREFIXES)
def test_every_entry_point_has_a_spec_and_every_spec_an_entry_point(role):
    tasks = {p.stem for p in (ROLES / role / "tasks").glob("*.yml")}
    assert set(entry_points(role)) <= tasks
    included = set().union(*(task_file(ROLES / role / "tasks" / f"{t}.yml").includes for t in tasks))
    not_included = {t for t in tasks if f"{t}.yml" not in included}
    assert not_included <= set(entry_points(role)), (
        f"task files nothing includes must be entry points with a spec: {sorted(not_included - set(entry_points(role)))}")


@pytest.mark.parametrize("role", PREFIXES)
def test_declared_defaults_are_the_defaults_of_defaults_main(role):
    defaults = load_yaml(ROLES / role / "defaults" / "main.yml") or {}
    declared_anywhere = set()
    for entry, spec in specs(role).items():
        for name, option in (spec.get("options") or {}).items():
            declared_anywhere.add(name)
            assert option.get("description"), f"{role}:{entry} {name} has no description"
            if name in defaults and "default" in option:
                assert option["default"] == defaults[name], (
                    f"{role}:{entry} declares {name} default {option['default']!r}, defaults/main.yml has "
                    f"{defaults[name]!r}")
            elif name in defaults:
                assert option.get("type") in ("int", "float", "bool") and isinstance(defaults[name], str), (
                    f"{role}:{entry} declares {name} without the default of defaults/main.yml "
                    f"({defaults[name]!r}); only a typed option whose default is an expression may leave it out")
            else:
                assert "default" not in option, (
                    f"{role}:{entry} declares a default for {name}, which defaults/main.yml does not have: "
                    "add it there or drop it here")
    assert not set(defaults) - declared_anywhere, (
        f"defaults/main.yml of {role} has variables no entry point declares: {sorted(set(defaults) - declared_anywhere)}")


@pytest.mark.parametrize("role,entry", CASES, ids=[f"{r}:{e}" for r, e in CASES])
def test_an_entry_point_declares_nothing_it_does_not_use(role, entry):
    declared = set(specs(role)[entry].get("options") or {})
    if entry == "main":
        return
    unused = declared - uses(role, entry) - (playbook_variables() if (role, entry) == ("release", "context") else set())
    assert not unused, f"{role}:{entry} declares {sorted(unused)} but none of its task files reads them"


def test_the_reader_sees_names_in_every_place_a_task_can_hold_them():
    assert names_in_expression("rollout_mode | default('release') == 'rollback'") == {"rollout_mode"}
    assert names_in_template("{{ _ctx.rollout_release_id }} {{ hostvars['x']['rollout_app_url'] }}") == {
        "_ctx", "rollout_release_id", "rollout_app_url"}
    assert names_in_template("{{ groups['rollout_canary'] }}") == set()
    assert names_in_template("plain rollout_app text") == set()
