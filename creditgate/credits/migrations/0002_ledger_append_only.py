"""On PostgreSQL the database itself refuses to rewrite history: UPDATE and DELETE on ledger
rows raise, and a settled hold can never change again. (TRUNCATE is left alone: test runs empty
tables with it.) Other databases rely on the application and the read-only admin."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION credits_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credits_ledgerentry is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER credits_ledger_append_only
    BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_append_only();

CREATE OR REPLACE FUNCTION credits_hold_settles_once() RETURNS trigger AS $$
BEGIN
    IF OLD.state <> 'active' THEN
        RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.state USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.amount <> OLD.amount OR NEW.account_id <> OLD.account_id THEN
        RAISE EXCEPTION 'the amount and account of hold % cannot change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER credits_hold_settles_once
    BEFORE UPDATE ON credits_hold
    FOR EACH ROW EXECUTE FUNCTION credits_hold_settles_once();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS credits_hold_settles_once ON credits_hold;
DROP FUNCTION IF EXISTS credits_hold_settles_once();
DROP TRIGGER IF EXISTS credits_ledger_append_only ON credits_ledgerentry;
DROP FUNCTION IF EXISTS credits_ledger_append_only();
"""


def _run(schema_editor, sql: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # No parameters: psycopg then sends the script as is (the "%" of RAISE is not a placeholder).
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql)


def forward(apps, schema_editor):
    _run(schema_editor, FORWARD)


def backward(apps, schema_editor):
    _run(schema_editor, BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
