//! `listIndexes`: the indexes a member holds, ready or still building (a 7.0 server lists an
//! index being built as if it were ready, unless asked for `includeBuildUUIDs`:
//! `src/mongo/db/catalog/list_indexes.cpp`). Building them is `index_builds`. A view has no
//! indexes: 166, "Namespace <ns> is a view, not a collection" (`catalog_raii.cpp`).

use std::sync::Arc;

use bson::{doc, RawDocumentBuf};

use crate::cluster::State;
use crate::collections::Kind;
use crate::commands::{cursor_reply, namespace, raw, readable};
use crate::errors;
use crate::wire::Request;

pub fn list(state: &mut State, member: usize, request: &Request) -> RawDocumentBuf {
    if let Err(refusal) = readable(state, member, request) {
        return raw(refusal);
    }
    let Some(ns) = namespace(request, "listIndexes") else {
        return raw(errors::invalid_namespace());
    };
    let store = &state.replica(member).store;
    if let Some(Kind::View { .. }) = store.collection(&ns).map(|c| &c.kind) {
        return raw(errors::command_error(
            166,
            &errors::view_message(&ns),
            false,
        ));
    }
    let Some(indexes) = state.replica(member).store.indexes(&ns) else {
        return raw(errors::command_error(
            26,
            &format!("ns does not exist: {ns}"),
            false,
        ));
    };
    let with_builds = request.body.get_bool("includeBuildUUIDs") == Ok(true);
    let specs = indexes
        .iter()
        .map(|index| {
            let build = index.building.filter(|_| with_builds);
            let entry = match build.and_then(|id| state.index_builds.iter().find(|b| b.id == id)) {
                Some(build) => doc! { "spec": index.spec(), "buildUUID": build.uuid },
                None => index.spec(),
            };
            Arc::new(raw(entry))
        })
        .collect();
    cursor_reply(
        state.members[member]
            .cursors
            .open(&ns, specs, None, None, false),
    )
}
