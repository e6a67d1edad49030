"""A renderer for the subset of Go templates (with Helm's functions) that
deploy/helm/tollgate uses, so CI can render the chart without a cluster.

It follows Helm where the chart could go wrong unnoticed:
- values.yaml numbers are float64 in Helm (values pass through JSON), and Go
  prints a float64 of 1e6 or more in exponent form (`4.194304e+06`); this
  renderer does the same, so a template that forgets `int64` fails the tests;
- a field of a missing map (`.Values.a.b` without `a`) is an error, a missing
  key is nil and prints as an empty string;
- `{{-` / `-}}` trim all whitespace (newlines included) on that side.

Anything outside the subset raises TemplateError instead of guessing.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml


class TemplateError(Exception):
    pass


class TemplateFail(TemplateError):
    """The template called `fail` or `required`."""


# --- values: Helm's number semantics -----------------------------------------


def helm_values(obj: Any) -> Any:
    """Numbers as float64, as Helm reads values.yaml (YAML → JSON → Go)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): helm_values(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [helm_values(v) for v in obj]
    return obj


def go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which `%v` uses: the shortest
    digits, in exponent form when the exponent is < -4 or >= 6 — so
    4194304.0 prints as `4.194304e+06`, 7400.0 as `7400`."""
    if f == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(abs(f))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    exp10 = len(ds) + int(exponent) - 1
    neg = "-" if f < 0 else ""
    if exp10 < -4 or exp10 >= 6:
        m = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{m}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    return neg + format(Decimal(repr(abs(f))).normalize(), "f")


def go_str(v: Any) -> str:
    """fmt.Sprint of a value."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (dict, list)):
        raise TemplateError(f"printing a map or list directly: {v!r} (use toYaml)")
    return str(v)


def truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


def to_yaml(v: Any) -> str:
    def plain(o: Any) -> Any:
        if isinstance(o, float) and o == int(o):
            return int(o)
        if isinstance(o, dict):
            return {k: plain(x) for k, x in o.items()}
        if isinstance(o, list):
            return [plain(x) for x in o]
        return o

    if v is None:
        return "null"
    return yaml.safe_dump(plain(v), default_flow_style=False, sort_keys=True).rstrip("\n")


def go_printf(fmt: str, *args: Any) -> str:
    out, i, a = [], 0, list(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            verb = fmt[i + 1]
            i += 2
            if verb == "%":
                out.append("%")
                continue
            if not a:
                raise TemplateError(f"printf {fmt!r}: missing argument")
            v = a.pop(0)
            if verb in "sv":
                out.append(go_str(v))
            elif verb == "d":
                out.append(str(int(v)))
            elif verb == "q":
                out.append(json.dumps(go_str(v)))
            else:
                raise TemplateError(f"printf verb %{verb} is not supported")
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --- parsing ---------------------------------------------------------------------

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


@dataclass
class Node:
    kind: str  # text | action | if | with | range | define
    text: str = ""
    branches: list = field(default_factory=list)  # [(pipeline|None, [nodes])]
    name: str = ""


def tokenize(src: str) -> list[tuple[str, str]]:
    toks, pos = [], 0
    for m in ACTION.finditer(src):
        text = src[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        toks.append(("text", text))
        body = m.group(2).strip()
        toks.append(("action", body))
        pos = m.end()
        if m.group(3):
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip())
    toks.append(("text", src[pos:]))
    return toks


def parse(src: str) -> tuple[list[Node], dict[str, list[Node]]]:
    toks = tokenize(src)
    defines: dict[str, list[Node]] = {}

    def block(i: int, stop: tuple[str, ...]) -> tuple[list[Node], int, str]:
        nodes: list[Node] = []
        while i < len(toks):
            kind, body = toks[i]
            i += 1
            if kind == "text":
                if body:
                    nodes.append(Node("text", text=body))
                continue
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"unterminated comment: {body[:40]}")
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("end", "else") and word in stop or (word == "else" and "else" in stop):
                return nodes, i, body
            if word in ("if", "with", "range"):
                node = Node(word)
                cond = body[len(word) :].strip()
                while True:
                    inner, i, ender = block(i, ("end", "else"))
                    node.branches.append((cond, inner))
                    if ender == "end":
                        break
                    rest = ender[len("else") :].strip()
                    if rest.startswith("if "):
                        if word != "if":
                            raise TemplateError("else if inside " + word)
                        cond = rest[3:].strip()
                    elif rest == "":
                        cond = None
                    else:
                        raise TemplateError(f"unsupported else form: {ender}")
                nodes.append(node)
                continue
            if word == "define":
                m = re.fullmatch(r'define\s+"([^"]+)"', body)
                if not m:
                    raise TemplateError(f"bad define: {body}")
                inner, i, _ = block(i, ("end",))
                defines[m.group(1)] = inner
                continue
            if word in ("end", "else"):
                raise TemplateError(f"unexpected {{{{ {word} }}}}")
            if word in ("template", "block", "break", "continue") or ":=" in body or "=" in body.split('"')[0]:
                raise TemplateError(f"unsupported action: {body}")
            nodes.append(Node("action", text=body))
        if stop:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {stop})")
        return nodes, i, ""

    nodes, _, _ = block(0, ())
    return nodes, defines


# --- expressions -------------------------------------------------------------------

TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:\\.|[^"\\])*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<lp>\()|(?P<rp>\))|(?P<pipe>\|)|(?P<field>\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.|\$)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)


def lex(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse expression at {expr[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
    return out


class Renderer:
    def __init__(self, defines: dict[str, list[Node]], root: dict[str, Any]):
        self.defines = defines
        self.root = root

    # pipeline := command ('|' command)*
    def eval_pipeline(self, toks: list, dot: Any) -> Any:
        cmds, cur, depth = [], [], 0
        for t in toks:
            if t[0] == "lp":
                depth += 1
            elif t[0] == "rp":
                depth -= 1
            if t[0] == "pipe" and depth == 0:
                cmds.append(cur)
                cur = []
            else:
                cur.append(t)
        cmds.append(cur)
        val, has_val = None, False
        for cmd in cmds:
            val = self.eval_command(cmd, dot, val, has_val)
            has_val = True
        return val

    def split_args(self, toks: list) -> list:
        args, i = [], 0
        while i < len(toks):
            if toks[i][0] == "lp":
                depth, j = 0, i
                while True:
                    if toks[j][0] == "lp":
                        depth += 1
                    elif toks[j][0] == "rp":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                    if j >= len(toks):
                        raise TemplateError("unbalanced parentheses")
                args.append(("group", toks[i + 1 : j]))
                i = j + 1
            else:
                args.append(toks[i])
                i += 1
        return args

    def eval_arg(self, arg, dot: Any) -> Any:
        kind, v = arg
        if kind == "group":
            return self.eval_pipeline(v, dot)
        if kind == "str":
            return json.loads(v)
        if kind == "raw":
            return v[1:-1]
        if kind == "num":
            return float(v) if "." in v else int(v)
        if kind == "field":
            return self.lookup(v, dot)
        if kind == "ident":
            if v in ("true", "false"):
                return v == "true"
            if v == "nil":
                return None
            return self.call(v, [], dot)
        raise TemplateError(f"unexpected token {v!r}")

    def lookup(self, path: str, dot: Any) -> Any:
        if path == ".":
            return dot
        if path == "$":
            return self.root
        cur = self.root if path.startswith("$") else dot
        parts = path.lstrip("$").strip(".").split(".")
        for n, p in enumerate(parts):
            if cur is None:
                raise TemplateError(f"nil pointer evaluating {path} (at .{'.'.join(parts[:n])})")
            if not isinstance(cur, dict):
                raise TemplateError(f"can't evaluate field {p} in {path}: not a map")
            cur = cur.get(p)
        return cur

    def eval_command(self, toks: list, dot: Any, piped: Any, has_piped: bool) -> Any:
        args = self.split_args(toks)
        if not args:
            raise TemplateError("empty command")
        head = args[0]
        if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
            vals = [self.eval_arg(a, dot) for a in args[1:]]
            if has_piped:
                vals.append(piped)
            return self.call(head[1], vals, dot)
        if len(args) > 1 or has_piped:
            raise TemplateError(f"{head[1]} is not a function")
        return self.eval_arg(head, dot)

    def call(self, name: str, a: list, dot: Any) -> Any:
        def need(n: int) -> None:
            if len(a) != n:
                raise TemplateError(f"{name} takes {n} arguments, got {len(a)}")

        if name == "include":
            need(2)
            if a[0] not in self.defines:
                raise TemplateError(f"no template {a[0]!r}")
            return self.render_nodes(self.defines[a[0]], a[1])
        if name == "default":
            need(2)
            return a[1] if truthy(a[1]) else a[0]
        if name == "quote":
            return " ".join(json.dumps(go_str(x)) for x in a)
        if name == "toYaml":
            need(1)
            return to_yaml(a[0])
        if name in ("nindent", "indent"):
            need(2)
            pad = " " * int(a[0])
            body = "\n".join(pad + line for line in go_str(a[1]).split("\n"))
            return ("\n" + body) if name == "nindent" else body
        if name == "trunc":
            need(2)
            return go_str(a[1])[: int(a[0])]
        if name == "trimSuffix":
            need(2)
            s = go_str(a[1])
            return s[: -len(a[0])] if a[0] and s.endswith(a[0]) else s
        if name == "printf":
            return go_printf(a[0], *a[1:])
        if name == "b64enc":
            need(1)
            return base64.b64encode(go_str(a[0]).encode()).decode()
        if name in ("int", "int64"):
            need(1)
            v = a[0]
            if v is None:
                return 0
            if isinstance(v, str):
                return int(v) if re.fullmatch(r"-?\d+", v) else 0
            return int(v)
        if name == "add":
            return sum(int(x) for x in a)
        if name == "not":
            need(1)
            return not truthy(a[0])
        if name == "and":
            for x in a:
                if not truthy(x):
                    return x
            return a[-1]
        if name == "or":
            for x in a:
                if truthy(x):
                    return x
            return a[-1]
        if name == "eq":
            need(2)
            return a[0] == a[1]
        if name == "ne":
            need(2)
            return a[0] != a[1]
        if name == "ternary":
            # Sprig: ternary TRUE_VALUE FALSE_VALUE CONDITION.
            need(3)
            return a[0] if truthy(a[2]) else a[1]
        if name == "fail":
            need(1)
            raise TemplateFail(go_str(a[0]))
        if name == "required":
            need(2)
            if not truthy(a[1]) and a[1] is not False:
                raise TemplateFail(go_str(a[0]))
            return a[1]
        raise TemplateError(f"function {name!r} is not supported by this renderer")

    def render_nodes(self, nodes: list[Node], dot: Any) -> str:
        out = []
        for n in nodes:
            if n.kind == "text":
                out.append(n.text)
            elif n.kind == "action":
                out.append(go_str(self.eval_pipeline(lex(n.text), dot)))
            elif n.kind in ("if", "with"):
                for cond, body in n.branches:
                    if cond is None:
                        out.append(self.render_nodes(body, dot))
                        break
                    v = self.eval_pipeline(lex(cond), dot)
                    if truthy(v):
                        out.append(self.render_nodes(body, v if n.kind == "with" else dot))
                        break
            elif n.kind == "range":
                (cond, body), *rest = n.branches
                v = self.eval_pipeline(lex(cond), dot)
                items = list(v.values()) if isinstance(v, dict) else list(v or [])
                if items:
                    for item in items:
                        out.append(self.render_nodes(body, item))
                elif rest:
                    out.append(self.render_nodes(rest[0][1], dot))
        return "".join(out)


def render_chart(chart_dir, values_override: dict | None = None, release: str = "tg", namespace: str = "gateway") -> dict[str, str]:
    """Renders every template of the chart: {template path: text}. Helpers
    (`_*.tpl`) are loaded first; NOTES.txt is rendered too."""
    from pathlib import Path

    chart_dir = Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    if values_override:
        values = merge(values, values_override)
    root = {
        "Values": helm_values(values),
        "Chart": {
            "Name": chart["name"],
            "Version": chart["version"],
            "AppVersion": chart.get("appVersion", ""),
        },
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
    }
    templates = sorted((chart_dir / "templates").iterdir())
    defines: dict[str, list[Node]] = {}
    parsed = {}
    for t in templates:
        nodes, d = parse(t.read_text())
        defines.update(d)
        parsed[t] = nodes
    r = Renderer(defines, root)
    out = {}
    for t, nodes in parsed.items():
        if t.name.startswith("_"):
            continue
        out[f"templates/{t.name}"] = r.render_nodes(nodes, root)
    return out


def merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return over
