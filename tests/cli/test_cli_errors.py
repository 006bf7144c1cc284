"""Every mistake an operator can make on the command line is one line, a non-zero exit and
no secret (issue 13, acceptance 2).

The table runs each command in this process through ``hie.cli.run`` (the entry point's
error path, fast); a few run through a real ``python -m hie.cli`` process to prove the
console entry. One region (the demo region, its users and keys) serves the whole module;
no case changes it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert
from sqlalchemy.exc import IntegrityError

from hie.app import Node
from hie.cli import load_demo, run
from hie.cli_support import describe
from hie.config import ConfigError, Settings, resolve_data_dir

HOSPITAL = "1110000011"  # tone-central of the demo region (hie.demo)
SECRET_PATTERNS = (re.compile(r"\$argon2"), re.compile(r"[0-9a-f]{40,}"), re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"),
                   re.compile(r"secret=[A-Z2-7]{16,}"), re.compile(r"password:"), re.compile(r"Traceback"))


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory holding the demo region (facilities, patients, users, keys)."""
    from hie.auth.demo import provision

    data = tmp_path_factory.mktemp("cli-region")
    node = Node(Settings(database_url=f"sqlite:///{data / 'hie.sqlite'}", data_dir=data, audit_system_use=False))
    node.upgrade()
    load_demo(node)
    provision(node)
    node.close()
    files = data / "files"
    files.mkdir()
    (files / "bad.json").write_text('{"keys": [\n  {"kty": "EC",}\n]}\n', "utf-8")
    (files / "not-a-key-set.json").write_text('{"keys": 5}', "utf-8")
    (files / "bad-key.json").write_text('{"keys": [{"kty": "EC"}]}', "utf-8")
    (files / "empty").mkdir()
    (files / "ssmix2").mkdir()
    yield data


def _secrets(region: Path) -> list[str]:
    """The demo users' passwords (printed only by the commands that create them)."""
    text = (region / "demo-credentials.txt").read_text("utf-8")
    return re.findall(r"password (\S+)", text)


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], region: Path,
         args: list[str], **env: str) -> tuple[int, str, str]:
    monkeypatch.setenv("HIE_DATA_DIR", str(region))
    monkeypatch.delenv("HIE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HIE_DEBUG", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    files = region / "files"
    code = run([a.replace("FILES", str(files)) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_clean(code: int, out: str, err: str, want_code: int, needle: str, secrets: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == want_code, (code, out, err)
    assert lines and lines[-1].startswith("error: ") and needle in lines[-1], err
    assert len([line for line in lines if line.startswith("error: ")]) == 1, err
    for text in (out, err):
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), (pattern.pattern, text)
        for secret in secrets:
            assert secret not in text


MISTAKES = [
    # hie admin add-facility
    (["admin", "add-facility", "--code", "123", "--name", "X", "--region", "R"], 2,
     "--code: '123' is not a 10-digit medical-institution code"),
    (["admin", "add-facility", "--code", HOSPITAL, "--name", "X", "--region", "R"], 1,
     f"--code: {HOSPITAL} is already registered as Organization/tone-central"),
    (["admin", "add-facility", "--code", "1311234567", "--name", "X", "--region", "R", "--kind", "bogus"], 2,
     "--kind: 'bogus' is not one of hospital, clinic"),
    (["admin", "add-facility", "--code", "1311234567", "--name", "X", "--region", "R", "--role", "bogus"], 2,
     "--role: 'bogus' is not one of disclosing, viewing, both"),
    # hie admin add-user / reset-user
    (["admin", "add-user", "u1", "--name", "U", "--facility", HOSPITAL, "--role", "emergency"], 2,
     "--role: 'emergency' is not one of operator, registrar, identity-staff, emergency-clinician"),
    (["admin", "add-user", "u1", "--name", "U", "--facility", "9999999999"], 2,
     "--facility: no registered, active facility has the code 9999999999"),
    (["admin", "add-user", "u1", "--name", "U", "--facility", "99"], 2, "--facility: '99' is not a 10-digit"),
    (["admin", "add-user", "demo-doctor", "--name", "U", "--facility", HOSPITAL], 1,
     "a user 'demo-doctor' exists already"),
    (["admin", "add-user", "u1", "--name", "U", "--kind", "bogus"], 2, "--kind: 'bogus' is not one of practitioner"),
    (["admin", "add-user", "u1", "--name", "U", "--kind", "patient"], 2, "a patient user needs the id"),
    (["admin", "add-user", "u1", "--name", "U"], 2, "clinicians and staff act for a facility"),
    (["admin", "add-user", "u1", "--name", "U", "--kind", "patient", "--patient", "nobody"], 2,
     "--patient: there is no Patient/nobody"),
    (["admin", "add-user", "u1", "--name", "U", "--facility", HOSPITAL, "--practitioner", "nobody"], 2,
     "--practitioner: there is no Practitioner/nobody"),
    (["admin", "reset-user", "nobody"], 1, "no user 'nobody'"),
    # hie admin add-client
    (["admin", "add-client", "--name", "c", "--jwks", "FILES/missing.json"], 2, "does not exist"),
    (["admin", "add-client", "--name", "c", "--jwks", "FILES/bad.json"], 2, "bad.json:2:16: not JSON"),
    (["admin", "add-client", "--name", "c", "--jwks", "FILES/not-a-key-set.json"], 2,
     'is not a JWKS (an object with a "keys" list)'),
    (["admin", "add-client", "--name", "c", "--jwks", "FILES/bad-key.json"], 2,
     "the key set does not import (key_parameter: 'crv' is required)"),
    (["admin", "add-client", "--name", "c", "--role", "bogus"], 2, "--role: 'bogus' is not one of operator"),
    (["admin", "add-client", "--name", "c", "--scope", "system/*.rs bogus"], 2, "--scope: bogus is not a SMART scope"),
    (["admin", "add-client", "--name", "c", "--facility", "1234567890"], 2,
     "--facility: no registered, active facility has the code 1234567890"),
    (["admin", "add-client", "--name", "c", "--kind", "bogus"], 2, "--kind: 'bogus' is not one of backend"),
    (["admin", "add-client", "--name", "c", "--auth-method", "bogus"], 2, "--auth-method: 'bogus' is not one of"),
    (["admin", "add-client", "--name", "c"], 2, "private_key_jwt needs a JWKS"),
    (["admin", "add-client", "--name", "c", "--kind", "public", "--redirect-uri", "notaurl"], 2,
     "--redirect-uri: 'notaurl' is not an absolute URI"),
    (["admin", "add-facility", "--code", "1311234567", "--name", " ", "--region", "R"], 2, "--name: must not be empty"),
    (["admin", "revoke-tokens", "--client", "nobody"], 1, "no client 'nobody'"),
    # hie admin token and the other admin commands
    (["admin", "token", "--expires-in", "-5"], 2,
     "'--expires-in': Input should be greater than or equal to 1 (got '-5')"),
    (["admin", "token", "--client", "nope"], 1, "no active client 'nope'"),
    (["admin", "token", "--scope", "bogus"], 2, "--scope: bogus is not a SMART scope"),
    (["admin", "retire-key", "no-such-kid"], 1, "no token signing key 'no-such-kid'"),
    (["admin", "revoke-tokens"], 2, "give exactly one of --user, --client, --jti"),
    (["admin", "disable-user", "nobody"], 1, "no user 'nobody'"),
    # hie consent
    (["consent", "explain", "nobody", HOSPITAL], 1, "Patient/nobody is not known"),
    (["consent", "explain", "nobody", "111"], 2, "facility: '111' is not a 10-digit"),
    (["consent", "explain", "nobody", HOSPITAL, "--resource", "bogus"], 2, "'bogus' is not Type/id"),
    (["consent", "break-glass-report", "--since", "notadate"], 2, "--since: since must be a date or instant"),
    (["consent", "disaster", "bogus"], 2, "mode: 'bogus' is not one of on, off, status"),
    # hie identity
    (["identity", "review", "--status", "bogus"], 2, "--status: 'bogus' is not one of open"),
    (["identity", "decide", "1", "bogus"], 2, "action: 'bogus' is not one of link, not-a-match"),
    (["identity", "decide", "999", "link"], 1, "review item 999 is not known"),
    (["identity", "link", "nobody"], 2, "give exactly one of --member-id, --regional-id, --target"),
    (["identity", "link", "nobody", "--target", "x"], 1, "Patient/nobody is not known"),
    (["identity", "merge", "nobody", "nobody-else"], 1, "Patient/nobody is not known"),
    (["identity", "unmerge", "999"], 1, "merge event 999 is not known"),
    (["identity", "events", "--limit", "0"], 2, "--limit: 0 is not a positive number"),
    # hie serve (refused before anything starts)
    (["serve", "--audit-flusher", "bogus"], 2, "--audit-flusher: 'bogus' is not one of process, thread"),
    (["serve", "--log-level", "bogus"], 2, "--log-level: 'bogus' is not one of critical"),
    (["serve", "--port", "0"], 2, "'--port': Input should be greater than or equal to 1 (got '0')"),
    (["serve", "--workers", "0"], 2, "'--workers'"),
    # hie load, import, ingest
    (["load", "FILES/empty"], 1, "no .json or .ndjson files in"),
    (["load", "FILES/missing"], 2, "does not exist"),
    (["import", "ssmix2", "FILES/ssmix2", "--facility", "12345"], 2, "facility code must be the 10-digit"),
    (["import", "ssmix2", "FILES/ssmix2", "--facility", HOSPITAL, "--state", "FILES/bad.json"], 2,
     "--state: " + "FILES/bad.json:2:16: not JSON"),
    (["import", "ssmix2", "FILES/ssmix2", "--facility", HOSPITAL, "--report", "FILES/missing/r.json"], 2,
     "--report: the directory"),
    (["ingest", "failures", "--status", "bogus"], 2, "--status: 'bogus' is not one of failed, replayed, all"),
    (["ingest", "replay", "424242"], 1, "no ingest failure with id 424242"),
    (["ingest", "replay", "--default-charset", "nope"], 2, "--default-charset: unknown character set 'nope'"),
    (["listen", "mllp", "--facility", HOSPITAL, "--default-charset", "bogus"], 2, "unknown character set 'bogus'"),
    (["listen", "mllp", "--facility", HOSPITAL, "--port", "70000"], 2, "'--port'"),
    (["import", "ssmix2", "FILES/ssmix2", "--facility", HOSPITAL, "--watch", "--interval", "0"], 2, "'--interval'"),
    (["load", "FILES/bad.json", "--workers", "-1"], 2, "'--workers'"),
    (["audit", "flusher", "--interval", "-1"], 2, "'--interval'"),
    (["consent", "explain", "demo-p1", "1399999999"], 1,
     "No registered, active facility with medical-institution code 1399999999"),
    # the command line itself
    (["bogus"], 2, "No such command 'bogus'"),
    (["admin", "add-user"], 2, "Missing argument 'username'"),
    (["admin", "token", "--bogus"], 2, "No such option: --bogus"),
]


@pytest.mark.parametrize(("args", "code", "needle"), MISTAKES, ids=[" ".join(m[0])[:60] for m in MISTAKES])
def test_a_mistake_is_one_line_a_non_zero_exit_and_no_secret(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], region: Path,
                                                             args: list[str], code: int, needle: str) -> None:
    done = _run(monkeypatch, capsys, region, args)
    _assert_clean(*done, code, needle.replace("FILES", str(region / "files")), _secrets(region))


def test_no_mistake_changed_the_region(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       region: Path) -> None:
    """The table ran on this region: no user or client was added by a refusal."""
    from sqlalchemy import select

    from hie.auth.tables import auth_client, auth_user

    node = Node(Settings(database_url=f"sqlite:///{region / 'hie.sqlite'}", data_dir=region))
    with node.engine.connect() as conn:
        names = {r[0] for r in conn.execute(select(auth_user.c.username))}
        clients = {r[0] for r in conn.execute(select(auth_client.c.name))}
    node.close()
    assert "demo-doctor" in names and "u1" not in names and "c" not in clients


@pytest.mark.parametrize(("env", "needle"), [
    ({"HIE_DATABASE_URL": "bogus://x"}, "HIE_DATABASE_URL: 'bogus://x' is not a sqlite:///path or postgresql"),
    ({"HIE_DATABASE_URL": "postgresql+psycopg://postgres:pa55-w0rd@127.0.0.1:1/x"}, "database error (OperationalError"),
    ({"HIE_DATABASE_URL": "sqlite:////nonexistent-h4/dir/x.sqlite"}, "no node here"),
    ({"HIE_DB_POOL_SIZE": "ten"}, "HIE_DB_POOL_SIZE: 'ten' is not a whole number"),
])
def test_a_database_that_cannot_be_used_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], region: Path,
                                                    env: dict[str, str], needle: str) -> None:
    done = _run(monkeypatch, capsys, region, ["admin", "token"], **env)
    usage = "bogus" in env.get("HIE_DATABASE_URL", "") or "HIE_DB_POOL_SIZE" in env
    _assert_clean(*done, 2 if usage else 1, needle, [*_secrets(region), "pa55-w0rd"])
    assert not Path("/nonexistent-h4").exists()


@pytest.mark.parametrize("command", [["serve", "--no-demo"], ["listen", "mllp", "--facility", HOSPITAL]])
def test_a_port_in_use_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         command: list[str]) -> None:
    fresh = tmp_path / "fresh"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = _run(monkeypatch, capsys, fresh, [*command, "--port", str(port)])
    _assert_clean(*done, 1, f"--port: cannot listen on 127.0.0.1:{port}: Address already in use", [])
    assert not fresh.exists()  # refused before a region was created


def test_a_command_never_silently_creates_a_region(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Acting on a region that is not there is refused and creates nothing; creating one says so."""
    fresh = tmp_path / "fresh"
    for args in (["admin", "token"], ["consent", "disaster"], ["identity", "review"], ["ingest", "failures"],
                 ["audit", "verify"], ["reindex"], ["admin", "add-facility", "--code", HOSPITAL, "--name", "X",
                                                   "--region", "R"]):
        code, out, err = _run(monkeypatch, capsys, fresh, args)
        assert code == 1 and err.strip().startswith("error: no node here") and str(fresh) in err, (args, err)
        assert not fresh.exists(), args
    code, out, err = _run(monkeypatch, capsys, fresh, ["db", "upgrade"])
    assert code == 0 and f"note: creating a new, empty node: database sqlite:///{fresh}/hie.sqlite" in err, err
    code, out, err = _run(monkeypatch, capsys, fresh, ["consent", "disaster"])
    assert code == 0 and "note:" not in err and "disaster mode: off" in out, (out, err)


def test_a_database_with_a_node_but_no_data_directory_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str], region: Path,
                                                                 tmp_path: Path) -> None:
    """Keys live in the data directory: a command must not make new ones beside an existing node."""
    elsewhere = tmp_path / "elsewhere"
    code, out, err = _run(monkeypatch, capsys, elsewhere, ["admin", "token"],
                          HIE_DATABASE_URL=f"sqlite:///{region / 'hie.sqlite'}")
    assert code == 1 and f"the data directory {elsewhere} (HIE_DATA_DIR) does not exist" in err, err
    assert not elsewhere.exists()


def test_the_data_directory_resolves_the_same_from_any_working_directory(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    seen = set()
    for cwd in (repo, tmp_path):
        monkeypatch.chdir(cwd)
        seen.add(resolve_data_dir({}))
        assert Settings.from_env({}).database_url == f"sqlite:///{repo / 'var' / 'hie.sqlite'}"
    assert seen == {(repo / "var", f"var/ of the source checkout {repo}")}
    assert resolve_data_dir({"HIE_DATA_DIR": str(tmp_path)}) == (tmp_path.resolve(), "HIE_DATA_DIR")
    assert issubclass(ConfigError, ValueError)


def test_an_integrity_error_is_described_without_its_parameters() -> None:
    """The fallback for a database refusal names the constraint, never the values (the
    duplicate-username case printed the password and recovery-code hashes)."""
    engine = create_engine("sqlite://")
    t = Table("account", MetaData(), Column("name", String, unique=True), Column("hash", String))
    t.create(engine)
    row = {"name": "bob", "hash": "$argon2id$v=19$m=65536$c2VjcmV0"}
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(insert(t), row)
        conn.execute(insert(t), row)
    assert "$argon2id" in str(caught.value)  # what used to be printed
    message, code = describe(caught.value)
    assert code == 1 and message == "the database refused the change (IntegrityError: UNIQUE constraint failed: " \
        "account.name)"


# -- through a real process: the console entry point ----------------------------------------


def _hie(region: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, HIE_DATA_DIR=str(region))
    full.pop("HIE_DATABASE_URL", None)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "hie.cli", *args], env=full, capture_output=True, text=True,
                          timeout=120, cwd="/")


def test_the_console_entry_prints_one_line_for_a_duplicate_user(region: Path) -> None:
    done = _hie(region, "admin", "add-user", "demo-doctor", "--name", "X", "--facility", HOSPITAL)
    _assert_clean(done.returncode, done.stdout, done.stderr, 1, "a user 'demo-doctor' exists already",
                  _secrets(region))
    assert done.stderr.count("\n") == 1 and not done.stdout  # exactly one line


def test_debug_shows_the_traceback_but_no_secret(region: Path) -> None:
    """--debug is for the developer: the traceback, still without the URL's password."""
    done = _hie(region, "--debug", "admin", "token",
                HIE_DATABASE_URL="postgresql+psycopg://postgres:pa55-w0rd@127.0.0.1:1/x")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and done.stderr.strip().splitlines()[-1].startswith("error: database error")
    assert "pa55-w0rd" not in done.stdout + done.stderr


def test_run_from_another_directory_nothing_is_created_there(tmp_path: Path) -> None:
    """The reported bug: ``hie`` run elsewhere made a new empty region in ./var. Now it finds
    the checkout's var/ (and refuses if there is no node there), whatever the directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("HIE_DATA_DIR", "HIE_DATABASE_URL")}
    done = subprocess.run([sys.executable, "-m", "hie.cli", "identity", "review", "--limit", "1"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
    repo = Path(__file__).resolve().parents[2]
    if done.returncode != 0:  # no node in this checkout's var/: refused, naming where it looked
        assert done.stderr.strip() == (
            f"error: no node here (database sqlite:///{repo / 'var' / 'hie.sqlite'}, data directory {repo / 'var'} "
            f"(var/ of the source checkout {repo})): start one with hie serve or hie db upgrade, or set HIE_DATA_DIR "
            "(and HIE_DATABASE_URL) to the node's"), done.stderr
        assert done.returncode == 1
