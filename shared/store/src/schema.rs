//! The one place the tables are defined. `admin tables create` and the tests create them from
//! here, and a test fails if `template.yaml` disagrees.
//!
//! Every table uses generic string keys `pk`/`sk` so that one table holds several item types,
//! each documented in `docs/TABLES.md`.

#[derive(Debug, PartialEq, Eq)]
pub struct TableDef {
    /// The resource name in `template.yaml`.
    pub logical_id: &'static str,
    /// The environment variable that carries the physical name to the functions.
    pub env_var: &'static str,
    /// The physical name used locally when the variable is unset.
    pub default_name: &'static str,
    pub hash_key: &'static str,
    pub range_key: Option<&'static str>,
    pub indexes: &'static [IndexDef],
    /// The attribute holding an epoch-seconds expiry, if the table uses DynamoDB TTL.
    pub ttl_attribute: Option<&'static str>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash_key: &'static str,
    pub range_key: Option<&'static str>,
}

/// Accounts and their limits, systems, API clients, integrations, the public half of the
/// signing keys with the revocations, and the protections' items. Every function may read it; only the admin tool writes most of it.
pub const CONFIG: TableDef = TableDef {
    logical_id: "ConfigTable",
    env_var: "CONFIG_TABLE",
    default_name: "ingest-config",
    hash_key: "pk",
    range_key: Some("sk"),
    indexes: &[IndexDef { name: "byAccount", hash_key: "gsi1pk", range_key: Some("gsi1sk") }],
    ttl_attribute: Some("expiresAt"),
};

/// Private signing keys. Kept apart so that IAM can let only the token function read them.
pub const KEYS: TableDef = TableDef {
    logical_id: "SigningKeysTable",
    env_var: "KEYS_TABLE",
    default_name: "ingest-signing-keys",
    hash_key: "pk",
    range_key: Some("sk"),
    indexes: &[],
    ttl_attribute: None,
};

/// End-user data: one partition per end user (`<accountId>#<userId>`), one item per
/// integration that wrote attributes for the user,
/// so that the page-load read of a user is a single Query.
pub const END_USERS: TableDef = TableDef {
    logical_id: "EndUsersTable",
    env_var: "END_USERS_TABLE",
    default_name: "ingest-end-users",
    hash_key: "pk",
    range_key: Some("sk"),
    indexes: &[],
    ttl_attribute: None,
};

impl TableDef {
    /// Every key attribute of the table and its indexes, sorted, once each: the
    /// `AttributeDefinitions` of the table.
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut attrs = vec![self.hash_key];
        attrs.extend(self.range_key);
        for ix in self.indexes {
            attrs.push(ix.hash_key);
            attrs.extend(ix.range_key);
        }
        attrs.sort_unstable();
        attrs.dedup();
        attrs
    }
}

/// Segments: a head per segment (its own partition), a list, guards and counts per system,
/// members spread over `SHARDS` partitions and counters over 8 per segment generation, and
/// each member's reverse entry in the user's partition (see `store/segments/` and
/// docs/TABLES.md). Its stream feeds the purge function.
pub const SEGMENTS: TableDef = TableDef {
    logical_id: "SegmentsTable",
    env_var: "SEGMENTS_TABLE",
    default_name: "ingest-segments",
    hash_key: "pk",
    range_key: Some("sk"),
    indexes: &[],
    ttl_attribute: None,
};

pub const ALL: &[&TableDef] = &[&CONFIG, &KEYS, &END_USERS, &SEGMENTS];
