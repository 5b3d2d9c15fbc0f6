"""Credentials for a Kerberized HDFS, checked before hdfs-native connects: Hadoop's token files read
in both formats, the token found for a NameNode named by host or IP, and a process without a ticket
or with a token past its maximum lifetime stopped in one line. The secure mini cluster's tests (in
test_hadoop.py) run the jobs on real tickets and tokens; these need no cluster, since the check
happens before any connection."""

import subprocess
import sys
import time

import pytest

from torchonspark.datasets import hadooptokens, kerberos
from torchonspark.sparkjobs.doctor import check_kerberos

NAMENODE_PORT = 1  # nothing listens there: the checks must answer before connecting


def _vlong(value: int) -> bytes:
    """Hadoop's WritableUtils.writeVLong."""
    if -112 <= value <= 127:
        return value.to_bytes(1, "big", signed=True)
    size, prefix = (len(f"{~value:x}") + 1) // 2, -120 if value < 0 else -112
    magnitude = ~value if value < 0 else value
    return (prefix - size).to_bytes(1, "big", signed=True) + magnitude.to_bytes(size, "big")


def _text(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _vlong(len(data)) + data


def _delegation_identifier(owner: str, max_date_ms: int) -> bytes:
    # version, owner, renewer, real user, issue date, max date, sequence number, master key id
    return b"\0" + _text(owner) + _text("yarn") + _text("") + _vlong(max_date_ms - 1000) + _vlong(max_date_ms) + _vlong(7) + _vlong(2)


def _varint(value: int) -> bytes:
    out = b""
    while value >= 0x80:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


TOKENS = [("HDFS_DELEGATION_TOKEN", f"127.0.0.1:{NAMENODE_PORT}", _delegation_identifier("alice@EXAMPLE.COM", 1_700_000_000_000)),
          ("YARN_AM_RM_TOKEN", "", b"\x01\x02\x03")]


def write_token_file(path, tokens=TOKENS, protobuf: bool = False) -> str:
    """A token storage file as Hadoop's Credentials writes it (Writable, or its delimited protobuf)."""
    if protobuf:
        entries = b"".join(_field(1, _field(1, kind.encode()) + _field(2, _field(1, identifier) + _field(2, b"secret")
                                                                      + _field(3, kind.encode()) + _field(4, service.encode())))
                           for kind, service, identifier in tokens)
        body = bytes([hadooptokens.PROTOBUF]) + _varint(len(entries)) + entries
    else:
        body = bytes([hadooptokens.WRITABLE]) + _vlong(len(tokens)) + b"".join(
            _text(kind) + _text(identifier) + _text(b"secret") + _text(kind) + _text(service) for kind, service, identifier in tokens) + _vlong(0)
    path.write_bytes(hadooptokens.MAGIC + body)
    return str(path)


@pytest.mark.parametrize("protobuf", [False, True], ids=["writable", "protobuf"])
def test_a_token_file_in_either_of_hadoops_formats_is_read(tmp_path, protobuf):
    tokens = hadooptokens.read_tokens(write_token_file(tmp_path / "tokens", protobuf=protobuf))
    assert tokens == [hadooptokens.Token("HDFS_DELEGATION_TOKEN", f"127.0.0.1:{NAMENODE_PORT}", "alice@EXAMPLE.COM", 1_700_000_000_000),
                      hadooptokens.Token("YARN_AM_RM_TOKEN", "")]


def test_a_file_that_is_not_a_whole_token_file_is_one_line(tmp_path):
    damaged = tmp_path / "damaged"
    write_token_file(tmp_path / "tokens")
    damaged.write_bytes((tmp_path / "tokens").read_bytes()[:30])
    with pytest.raises(ValueError, match="is a damaged Hadoop token file"):
        hadooptokens.read_tokens(damaged)
    (tmp_path / "other").write_text("not tokens")
    with pytest.raises(ValueError, match="is not a Hadoop token file"):
        hadooptokens.read_tokens(tmp_path / "other")


def test_the_token_of_a_namenode_named_by_host_is_found_under_its_ip_address():
    token = hadooptokens.Token("HDFS_DELEGATION_TOKEN", "127.0.0.1:8020")
    assert kerberos.token_host([token], "localhost", 8020) == "127.0.0.1"
    assert kerberos.token_host([token], "127.0.0.1", 8020) == "127.0.0.1"
    assert kerberos.token_host([token], "localhost", 9000) is None
    assert kerberos.token_host([hadooptokens.Token("HDFS_DELEGATION_TOKEN", "ha-hdfs:prod")], "prod", None) == "prod"
    assert kerberos.token_host([hadooptokens.Token("YARN_AM_RM_TOKEN", "127.0.0.1:8020")], "localhost", 8020) is None


@pytest.fixture
def secure_conf(tmp_path):
    """A client configuration that asks for Kerberos, a krb5.conf naming a KDC nobody runs, and no ticket."""
    conf = tmp_path / "hadoop-conf"
    conf.mkdir()
    (conf / "core-site.xml").write_text(
        "<configuration>"
        f"<property><name>fs.defaultFS</name><value>hdfs://localhost:{NAMENODE_PORT}</value></property>"
        "<property><name>hadoop.security.authentication</name><value>kerberos</value></property>"
        "</configuration>")
    (conf / "krb5.conf").write_text("[libdefaults]\n default_realm = EXAMPLE.COM\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
                                    "[realms]\n EXAMPLE.COM = {\n  kdc = localhost:1\n }\n")
    return {"HADOOP_CONF_DIR": str(conf), "KRB5_CONFIG": str(conf / "krb5.conf"), "KRB5CCNAME": f"FILE:{tmp_path / 'no-ticket'}"}


def _evaluate(tmp_path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    import os

    started = time.monotonic()
    environment = {key: value for key, value in os.environ.items() if key not in (kerberos.TOKEN_FILE_VARIABLE, "KRB5_CLIENT_KTNAME")}
    result = subprocess.run([sys.executable, "-m", "torchonspark.sparkjobs.cli", "evaluate", "--model", "hdfs:///runs/x/model",
                             "--data", "hdfs:///data/digits-pq", "--output", str(tmp_path / "e.json")],
                            capture_output=True, text=True, env={**environment, **env}, timeout=120)
    return result, time.monotonic() - started


def test_without_a_ticket_a_job_says_to_kinit_in_one_line(tmp_path, secure_conf):
    result, seconds = _evaluate(tmp_path, secure_conf)
    assert seconds < 15
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "is Kerberized" in result.stderr and "has no Kerberos ticket" in result.stderr and "kinit" in result.stderr
    assert not (tmp_path / "e.json").exists()


def test_a_token_past_its_maximum_lifetime_says_to_start_with_a_keytab(tmp_path, secure_conf):
    ended = int(time.time() * 1000) - 3_600_000
    tokens = write_token_file(tmp_path / "container_tokens", [("HDFS_DELEGATION_TOKEN", f"127.0.0.1:{NAMENODE_PORT}",
                                                                _delegation_identifier("alice@EXAMPLE.COM", ended))])
    result, seconds = _evaluate(tmp_path, {**secure_conf, kerberos.TOKEN_FILE_VARIABLE: tokens})
    assert seconds < 15
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "reached its maximum lifetime" in result.stderr and "--principal PRINCIPAL --keytab KEYTAB" in result.stderr


def test_a_token_for_another_namenode_falls_back_to_the_ticket_and_says_which_services_it_has(tmp_path, secure_conf):
    tokens = write_token_file(tmp_path / "container_tokens", [("HDFS_DELEGATION_TOKEN", "10.1.2.3:8020",
                                                                _delegation_identifier("alice@EXAMPLE.COM", 1 << 42))])
    result, _ = _evaluate(tmp_path, {**secure_conf, kerberos.TOKEN_FILE_VARIABLE: tokens})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "are for other services (10.1.2.3:8020)" in result.stderr and "has no Kerberos ticket" in result.stderr


def test_doctor_says_whether_kerberos_is_on_and_what_this_process_would_use(tmp_path, secure_conf, monkeypatch):
    for name in ("KRB5_CONFIG", "KRB5CCNAME"):  # GSSAPI reads this process's environment
        monkeypatch.setenv(name, secure_conf[name])
    no_ticket = check_kerberos(secure_conf)
    assert not no_ticket.ok and "on, and this process has no ticket" in no_ticket.line() and "kinit" in no_ticket.line()
    tokens = write_token_file(tmp_path / "container_tokens")
    with_tokens = check_kerberos({**secure_conf, kerberos.TOKEN_FILE_VARIABLE: tokens})
    assert with_tokens.ok and f"HDFS_DELEGATION_TOKEN for 127.0.0.1:{NAMENODE_PORT}" in with_tokens.line()
    (tmp_path / "simple").mkdir()
    (tmp_path / "simple" / "core-site.xml").write_text("<configuration/>")
    assert check_kerberos({"HADOOP_CONF_DIR": str(tmp_path / "simple")}).line().startswith("ok   kerberos: off")


def test_fresh_tokens_replace_a_token_file_whole_and_private_and_are_looked_for_well_before_they_end(tmp_path):
    from torchonspark.sparkjobs.engine.credentials import poll_interval_s

    container = tmp_path / "container_tokens"
    write_token_file(container)
    fresh = write_token_file(tmp_path / "fresh", tokens=[("HDFS_DELEGATION_TOKEN", "127.0.0.1:2", _delegation_identifier("bob@EXAMPLE.COM", 42_000))])
    written = hadooptokens.replace_token_file(container, open(fresh, "rb").read())
    assert [(t.owner, t.max_date_ms) for t in written] == [(t.owner, t.max_date_ms) for t in hadooptokens.read_tokens(container)] \
        == [("bob@EXAMPLE.COM", 42_000)]
    assert container.stat().st_mode & 0o777 == 0o600 and sorted(p.name for p in tmp_path.iterdir()) == ["container_tokens", "fresh"]
    with pytest.raises(ValueError, match="not a Hadoop token file"):
        hadooptokens.replace_token_file(container, b"half a file")
    assert hadooptokens.read_tokens(container)[0].owner == "bob@EXAMPLE.COM"  # a bad set never replaces a good one

    week, minutes = 7 * 24 * 3600 * 1000, 100 * 1000
    assert poll_interval_s([hadooptokens.Token("HDFS_DELEGATION_TOKEN", "s", "bob", week)], now_ms=0) == 60.0
    assert poll_interval_s([hadooptokens.Token("HDFS_DELEGATION_TOKEN", "s", "bob", minutes)], now_ms=0) == pytest.approx(100 / 30)
    assert poll_interval_s([hadooptokens.Token("HDFS_DELEGATION_TOKEN", "s", "bob", minutes)], now_ms=minutes) == 2.0
