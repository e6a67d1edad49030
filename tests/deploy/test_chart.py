"""deploy/helm/tollgate rendered without a cluster: by tests/deploy/gotemplate.py
(Helm's number formatting included) for the manifest checks, and by Helm's own
linter (helm-sdkpy's libhelm, see run.sh) for template and YAML errors."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import CHART, ROOT, help_text
from gotemplate import TemplateFail, merge, render_chart

SECRETS = {
    "cp": {"masterKey": {"value": "bWFzdGVyLWtleS1vZi0zMi1ieXRlcy1leGFjdGx5ISE="}},
    "dp": {"registrationToken": {"value": "tgdp-test-token"}},
}

VARIANTS = {
    "defaults": SECRETS,
    "postgres-existing-secrets-no-hpa": {
        "cp": {
            "masterKey": {"existingSecret": "ops-master-key"},
            "database": {"url": "postgres://tollgate:pw@db:5432/tollgate"},
            "persistence": {"enabled": False},
            "podAnnotations": {"team": "gateway"},
        },
        "dp": {
            "registrationToken": {"existingSecret": "ops-dp-token", "key": "tok"},
            "autoscaling": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "cpUrl": "https://cp.example.com",
            "maxBodyBytes": 16777216,
            "nodeSelector": {"pool": "edge"},
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "image": {"pullSecrets": [{"name": "regcred"}]},
    },
    # TLS everywhere (docs/tls.md): cert-manager style Secrets.
    "tls-everywhere": {
        "cp": {**SECRETS["cp"], "tls": {"enabled": True, "secretName": "cp-tls"}},
        "dp": {
            **SECRETS["dp"],
            "tls": {"enabled": True, "secretName": "dp-tls"},
            "cpCa": {"secretName": "cp-tls"},
        },
    },
}


def render(overrides: dict) -> list[dict]:
    out = render_chart(CHART, overrides)
    docs = []
    for name, text in out.items():
        if name.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                doc["__template"] = name
                docs.append(doc)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, component):
    found = [d for d in by_kind(docs, kind) if d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} for {component}, got {len(found)}"
    return found[0]


def value_paths(tree, prefix=""):
    for k, v in tree.items():
        path = f"{prefix}{k}"
        yield path
        if isinstance(v, dict):
            yield from value_paths(v, path + ".")


def test_every_referenced_value_exists_in_values_yaml():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    known = set(value_paths(values))
    missing = []
    for t in (CHART / "templates").iterdir():
        for ref in re.findall(r"\.Values((?:\.[A-Za-z0-9_]+)+)", t.read_text()):
            if ref[1:] not in known:
                missing.append(f"{t.name}: .Values{ref}")
    assert not missing, missing


def test_every_value_is_used_or_documented_as_reserved():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    templates = "\n".join(t.read_text() for t in (CHART / "templates").iterdir())
    used = set(re.findall(r"\.Values((?:\.[A-Za-z0-9_]+)+)", templates))
    used = {u[1:] for u in used}
    unused = [
        p
        for p in value_paths(values)
        if not any(p == u or p.startswith(u + ".") or u.startswith(p + ".") for u in used)
    ]
    # The values kept for the scale-out work; each must say so in values.yaml.
    assert sorted(unused) == ["dp.group", "etcd", "etcd.endpoints"], unused
    assert "(scale-out) DP group" in text and "(scale-out) etcd" in text


def test_missing_master_key_or_token_fails_with_a_clear_message():
    with pytest.raises(TemplateFail, match="cp.masterKey"):
        render({"dp": SECRETS["dp"]})
    with pytest.raises(TemplateFail, match="dp.registrationToken"):
        render({"cp": SECRETS["cp"]})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_are_complete_and_consistent(variant):
    overrides = VARIANTS[variant]
    docs = render(overrides)
    names = set()
    for d in docs:
        assert d.get("apiVersion") and d.get("kind"), d["__template"]
        meta = d["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
        assert meta["labels"]["app.kubernetes.io/instance"] == "tg"
        assert (d["kind"], meta["name"]) not in names, f"duplicate {d['kind']} {meta['name']}"
        names.add((d["kind"], meta["name"]))

    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    for s in secrets.values():
        for v in s["data"].values():
            assert re.fullmatch(r"[A-Za-z0-9+/=]+", v)
    external = {
        (overrides.get("cp", {}).get("masterKey", {}).get("existingSecret")),
        (overrides.get("dp", {}).get("registrationToken", {}).get("existingSecret")),
        (overrides.get("cp", {}).get("tls", {}).get("secretName")),
        (overrides.get("dp", {}).get("tls", {}).get("secretName")),
        (overrides.get("dp", {}).get("cpCa", {}).get("secretName")),
    } - {None}

    deployments = by_kind(docs, "Deployment")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "control-plane",
        "data-plane",
    }
    for dep in deployments:
        spec = dep["spec"]
        pod = spec["template"]
        for k, v in spec["selector"]["matchLabels"].items():
            assert pod["metadata"]["labels"][k] == v
        pspec = pod["spec"]
        assert pspec["securityContext"]["runAsNonRoot"] is True
        assert pspec["securityContext"]["runAsUser"] == 10001
        volumes = {v["name"]: v for v in pspec["volumes"]}
        for c in pspec["containers"]:
            assert re.fullmatch(r"[^:\s]+:[^:\s]+", c["image"]), c["image"]
            assert c["image"].endswith(":0.1.0")
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[probe]["httpGet"]["port"] in ports
            for m in c["volumeMounts"]:
                assert m["name"] in volumes, m
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    if ref["name"] in secrets:
                        assert ref["key"] in secrets[ref["name"]]["data"]
                    else:
                        assert ref["name"] in external, ref
            for a in c.get("args", []) + [e.get("value", "") for e in c.get("env", [])]:
                assert isinstance(a, str), f"{a!r} must be a string"
                assert not re.fullmatch(r"-?\d+(\.\d+)?e[+-]\d+", a), f"number in exponent form: {a}"
        for v in volumes.values():
            if "secret" in v:
                name = v["secret"]["secretName"]
                assert name in secrets or name in external, name
                if name in secrets:
                    for item in v["secret"]["items"]:
                        assert item["key"] in secrets[name]["data"]
            if "persistentVolumeClaim" in v:
                claims = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}
                assert v["persistentVolumeClaim"]["claimName"] in claims

    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        targets = [d for d in deployments if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert len(targets) == 1, svc["metadata"]["name"]
        cports = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in cports

    cp = one(docs, "Deployment", "control-plane")
    dp = one(docs, "Deployment", "data-plane")
    cp_svc = one(docs, "Service", "control-plane")
    dp_env = {e["name"]: e for e in dp["spec"]["template"]["spec"]["containers"][0]["env"]}
    cp_env = {e["name"]: e for e in cp["spec"]["template"]["spec"]["containers"][0]["env"]}
    cp_tls = overrides["cp"].get("tls", {}).get("enabled", False)
    scheme = "https" if cp_tls else "http"
    cp_url = overrides["dp"].get("cpUrl") or f"{scheme}://{cp_svc['metadata']['name']}:{cp_svc['spec']['ports'][0]['port']}"
    assert dp_env["TOLLGATE_CP_URL"]["value"] == cp_url
    # The CP and the DPs agree on the registration token.
    dp_token_vol = [v for v in dp["spec"]["template"]["spec"]["volumes"] if v["name"] == "registration-token"][0]
    assert cp_env["TOLLGATE_DP_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == dp_token_vol["secret"]["secretName"]
    assert cp_env["TOLLGATE_DP_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == dp_token_vol["secret"]["items"][0]["key"]
    assert ("TOLLGATE_DATABASE_URL" in cp_env) == bool(overrides["cp"].get("database"))
    # TLS: certificate files from the mounted Secret, probes over HTTPS, no
    # plaintext permission, and the DPs verifying the CP with its CA.
    dp_tls = overrides["dp"].get("tls", {}).get("enabled", False)
    for env, container, on, prefix in (
        (cp_env, cp["spec"]["template"]["spec"]["containers"][0], cp_tls, "CP"),
        (dp_env, dp["spec"]["template"]["spec"]["containers"][0], dp_tls, "DP"),
    ):
        assert (f"TOLLGATE_{prefix}_TLS_CERT" in env) == on
        if on:
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert env[f"TOLLGATE_{prefix}_TLS_CERT"]["value"].rsplit("/", 1)[0] in mounts
            assert env[f"TOLLGATE_{prefix}_TLS_KEY"]["value"].rsplit("/", 1)[0] in mounts
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["scheme"] == ("HTTPS" if on else "HTTP")
    assert ("TOLLGATE_CP_ALLOW_PLAINTEXT" in cp_env) == (not cp_tls)
    assert ("TOLLGATE_CP_CA_FILE" in dp_env) == bool(overrides["dp"].get("cpCa", {}).get("secretName"))
    args = dp["spec"]["template"]["spec"]["containers"][0]["args"]
    expected_body = str(overrides["dp"].get("maxBodyBytes", 4194304))
    assert args[args.index("--max-body-bytes") + 1] == expected_body

    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if overrides["dp"].get("autoscaling", {}).get("enabled", True):
        assert len(hpas) == 1 and "replicas" not in dp["spec"]
        assert hpas[0]["spec"]["scaleTargetRef"]["name"] == dp["metadata"]["name"]
        assert hpas[0]["spec"]["minReplicas"] <= hpas[0]["spec"]["maxReplicas"]
    else:
        assert not hpas and dp["spec"]["replicas"] == 2
    if overrides["dp"].get("podDisruptionBudget", {}).get("enabled", True):
        sel = pdbs[0]["spec"]["selector"]["matchLabels"]
        assert all(dp["spec"]["template"]["metadata"]["labels"][k] == v for k, v in sel.items())
    else:
        assert not pdbs
    monitors = by_kind(docs, "ServiceMonitor")
    if overrides.get("serviceMonitor", {}).get("enabled"):
        dp_svc = one(docs, "Service", "data-plane")
        assert monitors[0]["spec"]["endpoints"][0]["port"] in {p["name"] for p in dp_svc["spec"]["ports"]}
        assert monitors[0]["metadata"]["labels"]["release"] == "prom"
    else:
        assert not monitors


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_flags_and_environment_exist_in_the_binaries(variant):
    docs = render(VARIANTS[variant])
    binary_of = {"control-plane": "tollgate-cp", "data-plane": "tollgate-dp"}
    for dep in by_kind(docs, "Deployment"):
        prog = binary_of[dep["metadata"]["labels"]["app.kubernetes.io/component"]]
        text = help_text(prog)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        for a in c["args"]:
            if a.startswith("--"):
                assert re.search(rf"\s{re.escape(a)}[\s=]", text), f"{prog} has no flag {a}"
        for e in c["env"]:
            name = e["name"]
            if not name.startswith("TOLLGATE_"):
                continue
            if prog == "tollgate-cp" and name == "TOLLGATE_DP_TOKEN":
                continue  # hidden in --help; test_cp_reads_hidden_dp_token proves it works
            assert f"[env: {name}" in text, f"{prog} reads no {name}"


def test_probe_paths_are_served():
    # The data plane's own routes (data-plane/src/pipeline/mod.rs).
    routes = (ROOT / "data-plane" / "src" / "pipeline" / "mod.rs").read_text()
    docs = render(SECRETS)
    dp = one(docs, "Deployment", "data-plane")
    c = dp["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert f'"{c[probe]["httpGet"]["path"]}" =>' in routes


def helm_lib() -> Path | None:
    p = os.environ.get("TOLLGATE_HELM_LIB")
    return Path(p) if p else None


def test_helm_lint_with_the_real_helm_library(tmp_path):
    """Helm's own `lint` (libhelm from the helm-sdkpy wheel, loaded through
    ctypes): template syntax, functions and the YAML of every rendered file."""
    lib_path = helm_lib()
    if lib_path is None:
        if os.environ.get("CI"):
            pytest.fail("TOLLGATE_HELM_LIB is not set: tests/deploy/run.sh installs it")
        pytest.skip("TOLLGATE_HELM_LIB not set (tests/deploy/run.sh sets it)")
    lib = ctypes.CDLL(str(lib_path))
    lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [ctypes.POINTER(ctypes.c_ulonglong)]
    lib.helm_sdkpy_lint.argtypes = [ctypes.c_ulonglong, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]

    def lint(chart: Path) -> dict:
        handle = ctypes.c_ulonglong()
        assert lib.helm_sdkpy_config_create(b"default", None, None, b"{}", ctypes.byref(handle)) == 0
        out = ctypes.c_void_p()
        assert lib.helm_sdkpy_lint(handle, str(chart).encode(), ctypes.byref(out)) == 0
        return json.loads(ctypes.string_at(out.value).decode())

    for name, overrides in VARIANTS.items():
        chart = tmp_path / name / "tollgate"
        shutil.copytree(CHART, chart)
        values = merge(yaml.safe_load((CHART / "values.yaml").read_text()), overrides)
        (chart / "values.yaml").write_text(yaml.safe_dump(values))
        result = lint(chart)
        errors = [m["Path"] for m in result["Messages"] if m["Severity"] >= 3]
        assert not errors and not result["Errors"], f"{name}: helm lint errors in {errors}"

    # The linter does catch a broken template (so the check above can fail).
    broken = tmp_path / "broken" / "tollgate"
    shutil.copytree(tmp_path / "defaults" / "tollgate", broken)
    with open(broken / "templates" / "dp-service.yaml", "a") as f:
        f.write("  x: {{ .Values.dp.nope.deeper }}\n")
    result = lint(broken)
    assert [m["Path"] for m in result["Messages"] if m["Severity"] >= 3]
