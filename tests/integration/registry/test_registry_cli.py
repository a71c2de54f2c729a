"""`hybridmesh registry …` run in-process through the console-script entry point, so exit
codes are the ones a shell sees."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridmesh.cli import _common
from hybridmesh.cli.main import main

REFERENCE = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"
REFERENCE_COUNT = 14


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], database_url: str) -> None:
        self.capsys = capsys
        self.database_url = database_url

    def __call__(self, *args: str | Path) -> Run:
        self.capsys.readouterr()  # drop anything printed before
        argv = ["--database-url", self.database_url, *(str(a) for a in args)]
        with pytest.raises(SystemExit) as exited:
            main(argv)
        out, err = self.capsys.readouterr()
        code = exited.value.code
        return Run(code if isinstance(code, int) else 1, out, err)

    def ok(self, *args: str | Path) -> Run:
        run = self(*args)
        assert run.code == 0, run
        return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    return Cli(capsys, f"sqlite:///{tmp_path / 'mesh.db'}")


@pytest.fixture
def loaded(cli: Cli) -> Cli:
    cli.ok("registry", "load", REFERENCE)
    return cli


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


BAD_ARCHITECTURE = (
    "# comment\nname: svc-a\narchitecture: mainframe\nbase_url: http://svc-a.local\nversion: v1\n"
)


# --------------------------------------------------------------------------- validate


def test_validate_the_reference_services_exits_0(cli: Cli) -> None:
    run = cli.ok("registry", "validate", REFERENCE)

    assert f"valid: {REFERENCE_COUNT} service(s), 0 warning(s)" in run.out
    assert "warning" not in run.err


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (BAD_ARCHITECTURE, 3, "architecture"),
        ("name: svc-a\narchitecture: microservice\nbase_url: http://a\n", 1, "version"),
        (
            "name: svc-a\narchitecture: microservice\nversion: v1\nbase_url: ftp://x\n",
            4,
            "base_url",
        ),
        (
            "name: svc-a\narchitecture: microservice\nbase_url: http://a\nversion: v1\n"
            "dependencies:\n  - service: ghost\n    type: sync\n",
            6,
            "dependencies.0.service",
        ),
        (
            "name: svc-a\narchitecture: microservice\nbase_url: http://a\nversion: v1\n"
            "integration_patterns:\n  - type: telepathy\n",
            6,
            "integration_patterns.0.type",
        ),
        (
            "name: svc-a\narchitecture: microservice\nbase_url: http://a\nversion: v1\n"
            "resilience:\n  rate_limit: .inf\n",
            6,
            "resilience.rate_limit",
        ),
        (
            "name: svc-a\narchitecture: microservice\nbase_url: 'http://a b/'\nversion: v1\n",
            3,
            "base_url",
        ),
    ],
)
def test_validate_a_bad_file_exits_2_naming_file_line_and_field(
    cli: Cli, tmp_path: Path, text: str, line: int, field: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)

    run = cli("registry", "validate", path)

    assert run.code == 2, run
    assert f"{path}:{line}: error [{field}]: " in run.text
    assert "valid:" not in run.out


def test_validate_invalid_yaml_exits_2_naming_the_line(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "name: svc-a\narchitecture: [microservice\nversion: v1\n")

    run = cli("registry", "validate", path)

    assert run.code == 2
    assert f"{path}:3: error: invalid YAML" in run.text


def test_validate_reports_every_error_of_a_folder(cli: Cli, tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", BAD_ARCHITECTURE)
    b = write(tmp_path, "b.yaml", "name: svc-b\narchitecture: serverless\nbase_url: http://b\n")

    run = cli("registry", "validate", tmp_path)

    assert run.code == 2
    assert f"{a}:3: error [architecture]" in run.text
    assert f"{b}:1: error [version]" in run.text


def test_validate_json_on_a_bad_file_exits_2_with_the_errors(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD_ARCHITECTURE)

    run = cli("registry", "validate", path, "--json")

    assert run.code == 2
    report = run.json()
    assert report["valid"] is False
    assert report["services"] == []
    assert report["warnings"] == []
    (error,) = report["errors"]
    assert error["file"] == str(path)
    assert error["line"] == 3
    assert error["field"] == "architecture"
    assert error["severity"] == "error"
    assert "mainframe" in error["message"]


def test_validate_json_on_the_reference_services(cli: Cli) -> None:
    report = cli.ok("registry", "validate", REFERENCE, "--json").json()

    assert report["valid"] is True
    assert len(report["services"]) == REFERENCE_COUNT
    assert "legacy-erp" in report["services"]
    assert report["errors"] == []
    assert report["warnings"] == []


def _one_sided(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        "warn.yaml",
        "name: svc-a\narchitecture: microservice\nbase_url: http://a\nversion: v1\n"
        "dependencies: [{service: svc-b, type: sync}]\n"
        "---\n"
        "name: svc-b\narchitecture: microservice\nbase_url: http://b\nversion: v1\n",
    )


def test_validate_with_warnings_only_exits_0_and_prints_them(cli: Cli, tmp_path: Path) -> None:
    path = _one_sided(tmp_path)

    run = cli.ok("registry", "validate", path)

    assert "valid: 2 service(s), 1 warning(s)" in run.out
    assert f"{path}:5: warning [dependencies.0]: svc-a depends on svc-b" in run.err

    report = cli.ok("registry", "validate", path, "--json").json()
    assert report["valid"] is True
    assert [w["field"] for w in report["warnings"]] == ["dependencies.0"]


def test_validate_a_missing_path_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    run = cli("registry", "validate", tmp_path / "nowhere")

    assert run.code == 2
    assert "does not exist" in run.err


# --------------------------------------------------------------------------- load, list, show


def test_load_then_list_json_gives_the_eleven_services(cli: Cli) -> None:
    run = cli.ok("registry", "load", REFERENCE)
    assert f"loaded {REFERENCE_COUNT} service(s)" in run.out

    services = cli.ok("registry", "list", "--json").json()

    names = [s["name"] for s in services]
    assert len(names) == REFERENCE_COUNT
    assert names == sorted(names)
    assert "legacy-erp" in names
    assert {s["architecture"] for s in services} == {
        "microservice",
        "modular-monolith",
        "traditional-monolith",
        "serverless",
    }


def test_list_can_filter_by_architecture(loaded: Cli) -> None:
    services = loaded.ok("registry", "list", "--architecture", "traditional-monolith", "--json")

    assert [s["name"] for s in services.json()] == ["legacy-erp"]


def test_list_as_a_table(loaded: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # a terminal wide enough not to wrap the table
    # The CLI's console may have fixed its width from COLUMNS when it was made (pytest-xdist
    # workers start with COLUMNS set): let it read the terminal's width again.
    monkeypatch.setattr(_common.console, "_width", None)

    run = loaded.ok("registry", "list")

    assert "legacy-erp" in run.out
    assert "order-processing" in run.out


def test_list_of_an_empty_store_is_empty(cli: Cli) -> None:
    assert cli.ok("registry", "list", "--json").json() == []


def test_show_json_gives_the_definition_and_its_links(loaded: Cli) -> None:
    erp = loaded.ok("registry", "show", "legacy-erp", "--json").json()

    assert erp["name"] == "legacy-erp"
    assert erp["architecture"] == "traditional-monolith"
    assert erp["base_url"] == "https://internal.tanqory.com/erp"
    assert erp["links"] == []
    assert erp["resilience"]["max_concurrent"] == 4
    assert [p["type"] for p in erp["integration_patterns"]] == ["rest", "batch"]

    order = loaded.ok("registry", "show", "order-processing", "--json").json()
    links = {link["service"]: link for link in order["links"]}
    assert links["legacy-erp"]["type"] == "sync"
    assert links["legacy-erp"]["patterns"] == ["rest"]
    assert links["payment-service"]["type"] == "async"
    assert "events" in links["payment-service"]["patterns"]
    assert len(order["links"]) == len(order["dependencies"])


def test_show_as_text(loaded: Cli) -> None:
    run = loaded.ok("registry", "show", "legacy-erp")

    assert "legacy-erp" in run.out
    assert "traditional-monolith" in run.out
    assert "erp-team" in run.out


def test_show_of_an_unknown_service_exits_1(loaded: Cli) -> None:
    run = loaded("registry", "show", "nope")

    assert run.code == 1
    assert "nope" in run.err


def test_show_prints_text_that_looks_like_markup_as_written(cli: Cli, tmp_path: Path) -> None:
    write(
        tmp_path,
        "svc.yaml",
        "name: svc-a\narchitecture: microservice\nbase_url: http://a\nversion: v1\n"
        "description: 'Serves [/api] paths [beta]'\n"
        "integration_patterns:\n  - {type: rest, description: '[/v1] REST', use_cases: ['[x]']}\n",
    )
    cli.ok("registry", "load", tmp_path)

    run = cli.ok("registry", "show", "svc-a")

    assert "Serves [/api] paths [beta]" in run.out
    assert "[/v1] REST" in run.out


def test_load_of_a_bad_folder_exits_2_and_saves_nothing(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD_ARCHITECTURE)

    run = cli("registry", "load", path)

    assert run.code == 2
    assert f"{path}:3: error [architecture]" in run.text
    assert cli.ok("registry", "list", "--json").json() == []


def test_load_prints_warnings_and_still_saves(cli: Cli, tmp_path: Path) -> None:
    path = _one_sided(tmp_path)

    run = cli.ok("registry", "load", path)

    assert f"{path}:5: warning [dependencies.0]" in run.err
    assert [s["name"] for s in cli.ok("registry", "list", "--json").json()] == ["svc-a", "svc-b"]


def test_load_replace_removes_services_no_longer_defined(loaded: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "only-erp"
    folder.mkdir()
    # Without links: the reference ERP names consumers that are not in this folder.
    write(
        folder,
        "erp.yaml",
        "name: legacy-erp\narchitecture: traditional-monolith\n"
        "base_url: https://erp.local\nversion: v2\n",
    )
    loaded.ok("registry", "load", folder)
    assert len(loaded.ok("registry", "list", "--json").json()) == REFERENCE_COUNT

    loaded.ok("registry", "load", folder, "--replace")

    services = loaded.ok("registry", "list", "--json").json()
    assert [(s["name"], s["version"]) for s in services] == [("legacy-erp", "v2")]


@pytest.mark.postgres
def test_load_list_and_show_on_postgres(
    capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    cli = Cli(capsys, postgres_url)
    cli.ok("registry", "load", REFERENCE)

    assert len(cli.ok("registry", "list", "--json").json()) == REFERENCE_COUNT
    erp = cli.ok("registry", "show", "legacy-erp", "--json").json()
    assert erp["architecture"] == "traditional-monolith"
    assert cli("registry", "show", "nope").code == 1


# --------------------------------------------------------------------------- recommend


def test_recommend_json(cli: Cli) -> None:
    rec = cli.ok("registry", "recommend", "microservice", "traditional-monolith", "--json").json()

    assert rec == {
        "source": "microservice",
        "target": "traditional-monolith",
        "preferred": ["rest", "batch"],
        "rationale": "API gateway proxy with rate limiting",
        "rule": "*->traditional-monolith",
        "use_case": None,
        "for_use_case": None,
    }


def test_recommend_with_a_use_case(cli: Cli) -> None:
    rec = cli.ok(
        "registry",
        "recommend",
        "microservice",
        "traditional-monolith",
        "--use-case",
        "nightly financial report",
        "--json",
    ).json()

    assert rec["use_case"] == "nightly financial report"
    assert rec["for_use_case"] == "batch"

    text = cli.ok(
        "registry", "recommend", "microservice", "microservice", "--use-case", "mobile [beta]"
    )
    assert "events, rest, graphql" in text.out
    assert "for 'mobile [beta]': graphql" in text.out


def test_recommend_as_text(cli: Cli) -> None:
    run = cli.ok("registry", "recommend", "modular-monolith", "modular-monolith")

    assert "events, batch, rest" in run.out
    assert "Events for decoupling, batch for efficiency" in run.out


@pytest.mark.parametrize(
    "args", [("mainframe", "microservice"), ("microservice", "mainframe"), ("microservice",)]
)
def test_recommend_with_a_bad_architecture_argument_exits_2(
    cli: Cli, args: tuple[str, ...]
) -> None:
    run = cli("registry", "recommend", *args)

    assert run.code == 2
    assert "Usage" in run.err or "Error" in run.err


# --------------------------------------------------------------------------- graph, export


def test_graph_mermaid_from_the_store(loaded: Cli) -> None:
    run = loaded.ok("registry", "graph", "--format", "mermaid")

    assert run.out.startswith("flowchart")
    assert run.out.count("subgraph ") == 4
    assert "order_processing -->|sync| legacy_erp" in run.out
    assert "analytics_reporting ==>|batch| legacy_erp" in run.out


def test_graph_dot_from_the_store(loaded: Cli) -> None:
    run = loaded.ok("registry", "graph", "--format", "dot")

    assert run.out.startswith("digraph ")
    assert '"order-processing" -> "legacy-erp"' in run.out
    assert run.out.count(" -> ") > 10


def test_graph_mermaid_is_the_default_and_reads_from_a_path(cli: Cli) -> None:
    run = cli.ok("registry", "graph", "--from", REFERENCE)

    assert run.out.startswith("flowchart")
    assert "legacy_erp" in run.out


def test_graph_writes_to_a_file(loaded: Cli, tmp_path: Path) -> None:
    out = tmp_path / "graph.dot"

    loaded.ok("registry", "graph", "--format", "dot", "-o", out)

    assert out.read_text(encoding="utf-8").startswith("digraph ")


def test_graph_with_an_unknown_format_exits_2(loaded: Cli) -> None:
    assert loaded("registry", "graph", "--format", "png").code == 2


def test_graph_from_a_bad_path_exits_2(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD_ARCHITECTURE)

    run = cli("registry", "graph", "--from", path)

    assert run.code == 2
    assert f"{path}:3: error [architecture]" in run.text


def test_export_backstage_to_a_file(loaded: Cli, tmp_path: Path) -> None:
    out = tmp_path / "catalog-info.yaml"

    loaded.ok("registry", "export", "--format", "backstage", "-o", out)

    docs = list(yaml.safe_load_all(out.read_text(encoding="utf-8")))
    assert len(docs) == REFERENCE_COUNT
    assert {d["kind"] for d in docs} == {"Component"}
    assert {d["apiVersion"] for d in docs} == {"backstage.io/v1alpha1"}
    erp = next(d for d in docs if d["metadata"]["name"] == "legacy-erp")
    assert erp["spec"]["lifecycle"] == "deprecated"
    assert erp["metadata"]["annotations"]["hybridmesh.dev/architecture"] == ("traditional-monolith")


def test_export_backstage_to_stdout_from_a_path(cli: Cli) -> None:
    run = cli.ok("registry", "export", "--from", REFERENCE)

    docs = list(yaml.safe_load_all(run.out))
    assert len(docs) == REFERENCE_COUNT
