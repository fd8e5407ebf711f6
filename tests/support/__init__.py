"""What the tests share, and nothing else: plain functions and dataclasses, never a
fixture (fixtures live in tests/conftest.py, which applies them to every subdirectory).

- paths: the repository's root and tests/interop.
- cli: the real CLI as a process (`run_cli`), and a CLI aimed at one server with its
  config and state under the test's tmp_path.
- config: the one way a test writes a CLI config file (through the project's own
  TOML writer).
- servers: clients and Configs for a test's redis-server; waiting: `wait_until`.
- lab, files, backup: a lab's client and journal, file-tree snapshots, archives.
- failover, stand_ins: a Sentinel/replication topology's helpers; the docker,
  systemctl and journalctl stand-ins.
- docker_engine, compose_app, node, peers, pki, promtool, server_version: real
  programs the tests drive (a private dockerd, Node BullMQ, SMTP/HTTP peers, openssl,
  promtool, the session's redis-server).

The two executables here, docker-prerequisites and redis-from-debian-source, are run
by ./run and .ci/run by path."""
