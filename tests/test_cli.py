"""`storeflow import ...` through storeflow.cli.main: output and exit codes (0 ok, 2 bad input with one
line on stderr, 1 otherwise) against the real TimescaleDB."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from storeflow.cli import main

pytestmark = pytest.mark.db

EPC = "E2000011223344556677AABB"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def layout_done(db_url: str, mini_layout_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, _ = run(capsys, "import", "layout", str(mini_layout_path), "--database-url", db_url)
    assert code == 0
    assert "store mini-store imported (5 zones, 4 antennas, 1 doors)" in out
    return db_url


def test_import_reads_prints_counts_and_grouped_rejects(layout_done: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "reads.csv"
    p.write_text("ts,reader,antenna,epc,rssi\n"
                 f"2026-11-20T10:00:00+08:00,R1,1,{EPC},-61.5\n"
                 f"2026-11-20T10:00:01,R1,1,{EPC},-61.5\n"
                 f"2026-11-20T10:00:02+08:00,R5,1,{EPC},-61.5\n"
                 f"2026-11-20T10:00:03,R1,1,{EPC},-61.5\n")
    code, out, _ = run(capsys, "import", "reads", str(p), "--store", "mini-store", "--database-url", layout_done)
    assert code == 0
    assert "reads.csv: 1 reads rows imported into store mini-store, 3 rejected" in out
    assert "2  ts: timestamp has no UTC offset  (line 3, 5)" in out
    assert "1  unknown reader 'R5'  (line 4)" in out
    with psycopg.connect(layout_done) as conn:
        assert conn.execute("SELECT count(*) FROM tag_reads").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM rejects WHERE source = 'import:reads:reads.csv'").fetchone() == (3,)
    code, out, _ = run(capsys, "import", "reads", str(p), "--store", "mini-store", "--database-url", layout_done)
    assert code == 0 and "already imported before, skipped" in out


def test_import_tags_members_doors_purchases(layout_done: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    files = {
        "tags": f"epc,member,kind\n{EPC},M1,member\nAABBCCDD,,staff\n",
        "members": "member,tier,joined\nM1,gold,2025-01-02\n",
        "doors": "ts,door,entries,exits\n2026-11-20T10:00:00+08:00,D1,4,1\n",
        "purchases": "ts,member,zone,amount,receipt\n2026-11-20T10:00:00+08:00,M1,C02,99.90,R1\n",
    }
    for kind, text in files.items():
        p = tmp_path / f"{kind}.csv"
        p.write_text(text)
        store = ["--store", "mini-store"] if kind in ("doors", "purchases") else []
        code, out, err = run(capsys, "import", kind, str(p), *store, "--database-url", layout_done)
        assert code == 0, err
        n = text.count("\n") - 1
        assert f"{kind}.csv: {n} {kind} rows imported" in out and ", 0 rejected" in out
    with psycopg.connect(layout_done) as conn:
        assert conn.execute("SELECT count(*) FROM tags").fetchone() == (2,)
        assert conn.execute("SELECT tier FROM members").fetchone() == ("gold",)
        assert conn.execute("SELECT entries, exits FROM door_counts").fetchone() == (4, 1)
        assert conn.execute("SELECT member, amount::text FROM purchases").fetchone() == ("M1", "99.90")


@pytest.mark.parametrize("argv, message", [
    (["import", "reads", "{missing_col}", "--store", "mini-store"], "missing column(s) epc"),
    (["import", "reads", "{good}", "--store", "nowhere"], "unknown store 'nowhere'"),
    (["import", "reads", "{tmp}/absent.csv", "--store", "mini-store"], "cannot read"),
    (["import", "doors", "{good}"], "the following arguments are required: --store"),
    (["import", "visits", "{good}"], "invalid choice"),
    (["import", "layout", "{bad_layout}"], "unknown floor 9"),
])
def test_bad_input_exits_2_with_one_line(layout_done: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], message: str) -> None:
    (tmp_path / "missing.csv").write_text("ts,reader,antenna,rssi\n")
    (tmp_path / "good.csv").write_text(f"ts,reader,antenna,epc,rssi\n1763604000000000,R1,1,{EPC},-60\n")
    (tmp_path / "bad.yaml").write_text(
        "store: s1\nname: S\ntimezone: UTC\nfloors: [{floor: 1, width_m: 10, depth_m: 10}]\n"
        "zones: [{zone: C1, kind: counter, floor: 9, name: c, polygon: [[1,1],[2,1],[2,2]]}]\n")
    subst = {"{missing_col}": str(tmp_path / "missing.csv"), "{good}": str(tmp_path / "good.csv"),
             "{tmp}": str(tmp_path), "{bad_layout}": str(tmp_path / "bad.yaml")}
    args = [a for a in argv]
    for i, a in enumerate(args):
        for k, v in subst.items():
            a = a.replace(k, v)
        args[i] = a
    code, out, err = run(capsys, *args, "--database-url", layout_done)
    assert code == 2
    assert message in one_line(err)
    assert out == ""


def test_unreachable_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "tags.csv"
    p.write_text(f"epc,member,kind\n{EPC},M1,member\n")
    code, _, err = run(capsys, "import", "tags", str(p), "--database-url", "postgresql://postgres@127.0.0.1:1/x")
    assert code == 2
    assert "cannot connect to the database" in one_line(err)


def test_unexpected_error_exits_1(layout_done: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.files

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(ingest.files, "import_file", boom)
    p = tmp_path / "tags.csv"
    p.write_text(f"epc,member,kind\n{EPC},M1,member\n")
    code, _, err = run(capsys, "import", "tags", str(p), "--database-url", layout_done)
    assert code == 1
    assert one_line(err) == "storeflow: error: RuntimeError: disk on fire"
