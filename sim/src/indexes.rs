//! `listIndexes` and `createIndexes`: the indexes a member holds, and building them as
//! mongod 7.0 replies to it, for mabel's `{time: 1, _id: 1}` and the tests' unique indexes.

use std::sync::Arc;

use bson::{doc, Bson, RawDocumentBuf};

use crate::cluster::State;
use crate::commands::{cursor_reply, namespace, raw, readable};
use crate::errors;
use crate::wire::Request;

pub fn list(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    if !readable(state, member, request) {
        return raw(errors::not_primary_no_secondary_ok());
    }
    let Some(ns) = namespace(request, "listIndexes") else {
        return raw(errors::invalid_namespace());
    };
    let Some(indexes) = state.replica(member).store.indexes(&ns) else {
        return raw(errors::command_error(
            26,
            &format!("ns does not exist: {ns}"),
            false,
        ));
    };
    let specs = indexes.iter().map(|i| Arc::new(raw(i.spec()))).collect();
    cursor_reply(
        state.members[member]
            .cursors
            .open(&ns, specs, None, None, false),
    )
}

/// Single-field indexes, and compound ones that are not unique (mabel's `{time: 1, _id: 1}`);
/// the requested `name` is ignored in favour of the server's default, `<field>_<direction>`
/// joined by `_`.
///
/// The reply is mongod 7.0's `CreateIndexesReply`, fields in its IDL order
/// (src/mongo/db/create_indexes.idl): `numIndexesBefore`, `numIndexesAfter`,
/// `createdCollectionAutomatically`, `commitQuorum`, `note`. As in
/// src/mongo/db/commands/create_indexes_cmd.cpp, a replica-set member builds in two phases
/// with the default commit quorum `"votingMembers"` and says so in every reply; when every
/// index already exists it returns early, without `createdCollectionAutomatically`.
pub fn create(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    let Some(term) = state.writable_term(member) else {
        return raw(errors::not_primary(false));
    };
    let Some(ns) = namespace(request, "createIndexes") else {
        return raw(errors::invalid_namespace());
    };
    let existed = state.replica(member).store.indexes(&ns).map(<[_]>::len);
    let specs = request
        .body
        .get_array("indexes")
        .cloned()
        .unwrap_or_default();
    let mut created = 0;
    for spec in specs.iter().filter_map(Bson::as_document) {
        let unique = spec.get_bool("unique").unwrap_or(false);
        let key: Option<Vec<(String, i32)>> = spec.get_document("key").ok().and_then(|k| {
            k.iter()
                .map(|(f, d)| Some((f.clone(), direction(d)?)))
                .collect()
        });
        let key = match key.as_deref() {
            Some(single @ [_]) => single,
            Some(compound @ [_, _, ..]) if !unique => compound,
            _ => {
                let message = "the fake replica set supports only single-field indexes and \
                               compound indexes that are not unique";
                return raw(errors::command_error(2, message, false));
            }
        };
        match state.create_index(member, term, &ns, key, unique) {
            Ok(new) => created += usize::from(new),
            Err(dup) => {
                let (field, direction) = &key[0];
                let mut reply = errors::command_error(
                    11000,
                    &format!("Index build failed: {}", dup.message()),
                    false,
                );
                reply.insert("keyPattern", doc! { field: direction });
                reply.insert("keyValue", doc! { field: dup.value });
                return raw(reply);
            }
        }
    }
    let after = state
        .replica(member)
        .store
        .indexes(&ns)
        .map(<[_]>::len)
        .unwrap_or(1);
    // A new collection has its `_id` index before the build counts.
    let before = existed.unwrap_or(1);
    let mut reply = doc! {
        "numIndexesBefore": before as i32,
        "numIndexesAfter": after as i32,
    };
    if existed.is_none() || created > 0 {
        reply.insert("createdCollectionAutomatically", existed.is_none());
    }
    reply.insert("commitQuorum", "votingMembers");
    if after == before {
        reply.insert("note", "all indexes already exist");
    } else if created < specs.len() {
        reply.insert("note", "index already exists");
    }
    reply.insert("ok", 1.0);
    raw(reply)
}

/// 1 or -1, however the number is typed.
fn direction(value: &Bson) -> Option<i32> {
    let n = match value {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) => *f as i64,
        _ => return None,
    };
    match n {
        1 => Some(1),
        -1 => Some(-1),
        _ => None,
    }
}
