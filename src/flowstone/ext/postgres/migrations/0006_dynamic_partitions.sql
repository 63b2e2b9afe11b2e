-- flowstone 0006: the keys of dynamic partitions, by partitions name.
-- Runs with search_path set to the target schema, inside the migration transaction.
-- seq orders a name's keys as they were first added.

CREATE TABLE dynamic_partitions (
    name          text NOT NULL,
    partition_key text NOT NULL,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, partition_key)
);
CREATE INDEX dynamic_partitions_order_idx ON dynamic_partitions (name, seq);
