"""The SQL text of the store's operations, built once per schema.

Names are schema-qualified and quoted here, so statements do not depend on the
connection's ``search_path`` (a user's own pool works as is). Values always travel as bind
parameters; JSON columns are sent and read as text so that no connection codec is assumed.
"""

from __future__ import annotations

from ._sql import qualified

__all__ = ["RECORD_COLUMNS", "RECORD_FIELDS", "RUN_COLUMNS", "VALUE_FIELDS", "Queries"]

#: Columns of a materialization record, in the order of the write statement's arrays.
RECORD_FIELDS = (
    ("run_id", "text"),
    ("asset", "text"),
    ("partition_id", "text"),
    ("partition_key", "text"),
    ("status", "text"),
    ("attempts", "int"),
    ("started_at", "timestamptz"),
    ("ended_at", "timestamptz"),
    ("error", "text"),
    ("error_type", "text"),
    ("metadata", "text"),
    ("code_version", "text"),
    ("data_version", "text"),
    ("input_versions", "text"),
    ("io_manager", "text"),
    ("reused", "bool"),
    ("to_latest", "bool"),
)
_JSON_FIELDS = frozenset({"metadata", "input_versions"})

#: Columns of a stored value, in the order of the write statement's arrays.
VALUE_FIELDS = (
    ("asset", "text"),
    ("partition_id", "text"),
    ("partition_key", "text"),
    ("format", "text"),
    ("value_json", "text"),
    ("value_bytes", "bytea"),
    ("run_id", "text"),
)

RECORD_COLUMNS = (
    "run_id, asset, partition_key, status, attempts, started_at, ended_at, error, error_type, "
    "metadata::text AS metadata, code_version, data_version, "
    "input_versions::text AS input_versions, io_manager, reused"
)
RUN_COLUMNS = (
    "run_id, pipeline, selection, partition_key, status, started_at, ended_at, "
    "tags::text AS tags, created_by"
)


def _select_list(fields: tuple[tuple[str, str], ...], skip: frozenset[str]) -> str:
    return ", ".join(
        f"{name}::jsonb" if name in _JSON_FIELDS else name for name, _ in fields if name not in skip
    )


class Queries:
    """Every statement of the store for one schema.

    :param schema: the (validated) schema name
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        runs = qualified(schema, "runs")
        records = qualified(schema, "materializations")
        latest = qualified(schema, "latest")
        values = qualified(schema, "asset_values")
        self.runs_table = runs
        self.records_table = records
        self.latest_table = latest
        self.values_table = values

        self.create_run = f"""
            INSERT INTO {runs} AS r
                (run_id, pipeline, selection, partition_key, status, started_at, ended_at,
                 tags, created_by)
            VALUES ($1, $2, $3::text[], $4, $5, $6, $7, $8::text::jsonb, $9)
            ON CONFLICT (run_id) DO UPDATE SET run_id = EXCLUDED.run_id
            RETURNING {RUN_COLUMNS}, (xmax = 0) AS inserted
        """
        self.finish_run = f"UPDATE {runs} SET status = $2, ended_at = $3 WHERE run_id = $1"
        self.get_run = f"SELECT {RUN_COLUMNS} FROM {runs} WHERE run_id = $1"
        self.list_runs = f"SELECT {RUN_COLUMNS} FROM {runs} ORDER BY started_at DESC, seq LIMIT $1"
        self.get_records = f"SELECT {RECORD_COLUMNS} FROM {records} WHERE run_id = $1 ORDER BY seq"
        self.latest = (
            f"SELECT {RECORD_COLUMNS} FROM {latest} WHERE asset = $1 AND partition_id = $2"
        )
        self.history_partition = (
            f"SELECT {RECORD_COLUMNS} FROM {records} WHERE asset = $1 AND partition_id = $2 "
            "ORDER BY started_at DESC NULLS LAST, seq LIMIT $3"
        )
        self.history_all = (
            f"SELECT {RECORD_COLUMNS} FROM {records} WHERE asset = $1 "
            "ORDER BY started_at DESC NULLS LAST, seq LIMIT $2"
        )
        self.invalidate = f"DELETE FROM {latest} WHERE asset = $1 AND partition_id = $2"

        n_rec = len(RECORD_FIELDS)
        rec_params = ", ".join(f"${i + 1}::{t}[]" for i, (_, t) in enumerate(RECORD_FIELDS))
        rec_names = ", ".join(name for name, _ in RECORD_FIELDS)
        val_params = ", ".join(f"${n_rec + i + 1}::{t}[]" for i, (_, t) in enumerate(VALUE_FIELDS))
        val_names = ", ".join(name for name, _ in VALUE_FIELDS)
        rec_cols = [name for name, _ in RECORD_FIELDS if name != "to_latest"]
        lat_cols = [c for c in rec_cols if c != "run_id"] + ["run_id"]
        rec_update = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in rec_cols if c not in ("run_id", "asset", "partition_id")
        )
        lat_update = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in lat_cols if c not in ("asset", "partition_id")
        )
        val_cols = [name for name, _ in VALUE_FIELDS]
        val_update = ", ".join(
            f"{c} = EXCLUDED.{c}" for c in val_cols if c not in ("asset", "partition_id")
        )
        skip_latest = frozenset({"to_latest"})
        # One statement, one round trip, atomic: records (and the current-record copies of
        # succeeded ones) together with the values written since the last flush.
        self.write = f"""
            WITH src AS (
                SELECT * FROM unnest({rec_params}) AS s({rec_names})
            ), rec AS (
                INSERT INTO {records} ({", ".join(rec_cols)})
                SELECT {_select_list(RECORD_FIELDS, skip_latest)} FROM src
                ON CONFLICT (run_id, asset, partition_id) DO UPDATE
                SET {rec_update}, updated_at = now()
            ), lat AS (
                INSERT INTO {latest} ({", ".join(lat_cols)})
                SELECT {", ".join(f"{c}::jsonb" if c in _JSON_FIELDS else c for c in lat_cols)}
                FROM src WHERE to_latest
                ON CONFLICT (asset, partition_id) DO UPDATE
                SET {lat_update}, updated_at = now()
            ), val AS (
                INSERT INTO {values} ({val_names})
                SELECT asset, partition_id, partition_key, format, value_json::jsonb,
                       value_bytes, run_id
                FROM unnest({val_params}) AS v({val_names})
                ON CONFLICT (asset, partition_id) DO UPDATE
                SET {val_update}, stored_at = now()
            )
            SELECT 1
        """
        # The common case, one record (and at most one value), with scalar parameters: the
        # same effect as ``write`` for less work on both sides.
        scalar = {
            name: (f"${i + 1}::text::jsonb" if name in _JSON_FIELDS else f"${i + 1}::{t}")
            for i, (name, t) in enumerate(RECORD_FIELDS)
        }
        rec_insert = f"""
                INSERT INTO {records} ({", ".join(rec_cols)})
                VALUES ({", ".join(scalar[c] for c in rec_cols)})"""
        rec_upsert = f"""{rec_insert}
                ON CONFLICT (run_id, asset, partition_id) DO UPDATE
                SET {rec_update}, updated_at = now()"""
        one = f"""
            WITH rec AS ({rec_upsert}
            ), lat AS (
                INSERT INTO {latest} ({", ".join(lat_cols)})
                SELECT {", ".join(scalar[c] for c in lat_cols)} WHERE {scalar["to_latest"]}
                ON CONFLICT (asset, partition_id) DO UPDATE
                SET {lat_update}, updated_at = now()
            )"""
        # The same for a record this process has not written yet (its ``running`` record
        # waited in memory): a plain insert skips the speculative insertion of
        # ``ON CONFLICT``. When the row exists after all (a resumed run, a retried
        # statement), it fails with a unique violation and the upsert runs instead.
        one_new = one.replace(rec_upsert, rec_insert)
        self.write_one = one + "\n            SELECT 1"
        self.write_one_new = one_new + "\n            SELECT 1"
        #: The constraint a ``*_new`` statement violates when the record exists.
        self.record_key = "materializations_pkey"
        value_scalar = ", ".join(
            f"${n_rec + i + 1}::text::jsonb" if name == "value_json" else f"${n_rec + i + 1}::{t}"
            for i, (name, t) in enumerate(VALUE_FIELDS)
        )
        val_one = f""", val AS (
                INSERT INTO {values} ({val_names}) VALUES ({value_scalar})
                ON CONFLICT (asset, partition_id) DO UPDATE
                SET {val_update}, stored_at = now()
            )
            SELECT 1"""
        self.write_one_value = one + val_one
        self.write_one_value_new = one_new + val_one

        self.load_value = (
            f"SELECT format, value_json::text AS value_json, value_bytes FROM {values} "
            "WHERE asset = $1 AND partition_id = $2"
        )
        self.value_exists = (
            f"SELECT EXISTS (SELECT 1 FROM {values} WHERE asset = $1 AND partition_id = $2)"
        )
        self.delete_value = (
            f"DELETE FROM {values} WHERE asset = $1 AND partition_id = $2 "
            "RETURNING format, value_json::text AS value_json"
        )
        self.list_partitions = (
            f"SELECT partition_key FROM {values} WHERE asset = $1 "
            "ORDER BY partition_key NULLS FIRST"
        )
        self.upsert_value = f"""
            INSERT INTO {values} ({val_names})
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
            ON CONFLICT (asset, partition_id) DO UPDATE SET {val_update}, stored_at = now()
        """
