"""Names inside a lab directory, shared by `lab up|down|status` and the lab's
PostgreSQL (which must not import psycopg into every lab command)."""

STATE_NAME = "lab.json"  # the port the lab uses (kept across up/down)
POSTGRES_DIR = "postgres"  # `lab up --with-postgres`: the cluster, see lab/pglab.py
