//! `createIndexes` as a 7.0 replica set runs it: on a collection with documents, a two-phase
//! build that commits only once its commit quorum of members has built the index, and a
//! command that waits for that, however long it takes.
//!
//! From `src/mongo/db/index_builds/README.md` ("Replica Set Index Builds", "Commit Quorum"),
//! `index_builds_coordinator_mongod.cpp` and `create_indexes_cmd.cpp`:
//! - The primary logs `startIndexBuild`; every member starts building when it applies it,
//!   and when done votes to the current primary (`voteCommitIndexBuild`), the primary to
//!   itself. Votes are kept in a replicated collection, so they outlive a failover.
//! - Once the votes meet the quorum and its own build is done, the primary logs
//!   `commitIndexBuild`, and the index is ready wherever that is applied. A member that had
//!   not finished holds its replication at that entry until it has. The default quorum is
//!   `"votingMembers"`, all three here: with one member down the build never commits, and the
//!   command never returns. `"majority"` needs two; a number, that many; 0, none.
//! - An empty or new collection is indexed in one step, with no votes.
//! - The command waits for the build, then for its write concern. At `maxTimeMS` it aborts
//!   the build and fails with 50. A step-down fails it with 11602, and the build goes on: the
//!   next primary commits it when the quorum is met. An index already built or building is
//!   not built again; the command waits for one still building, then works out again what
//!   is left to build. The same key under another name is 85 IndexOptionsConflict, another
//!   key under a name already taken 86 IndexKeySpecsConflict; a given `name` is kept.
//! - The reply: `numIndexesBefore`, `numIndexesAfter`, `createdCollectionAutomatically`,
//!   `commitQuorum` (as given, else `"votingMembers"`), `note`, in that order; with nothing
//!   to build, only the counts and `note: "all indexes already exist"`.
//!
//! On a view it fails with 166, "Cannot create indexes on a view"; on a time-series collection
//! a unique index fails with 72, "Unique indexes are not supported on time-series collections".
//!
//! A unique index is checked against the documents when the build starts, and again by the
//! primary before it commits: a duplicate written meanwhile aborts the build and fails the
//! command with 11000. Limits: indexes are on one field, or on several when not unique.

use std::collections::HashSet;
use std::sync::MutexGuard;
use std::time::Instant;

use bson::{doc, Bson, Document};

use crate::cluster::{Shared, State};
use crate::collections::Kind;
use crate::commands::{integer, is_current, max_time, respond, write_target, Outcome};
use crate::errors;
use crate::fail_command::Passed;
use crate::oplog::Op;
use crate::store::{DuplicateKey, Index};
use crate::wire::Request;
use crate::write_concern;

/// A two-phase build, as the primaries see it.
pub struct Build {
    pub id: u64,
    pub uuid: bson::Uuid,
    pub ns: String,
    quorum: Quorum,
    /// The members that have voted to commit.
    votes: HashSet<usize>,
    pub outcome: Option<Ended>,
    /// Why the primary aborted it at commit: a unique index over duplicates.
    failure: Option<Box<DuplicateKey>>,
}

/// How a build ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ended {
    Committed,
    Aborted,
}

/// How many members must have built the index before it commits.
#[derive(Clone, Debug)]
enum Quorum {
    VotingMembers,
    Majority,
    Members(usize),
}

impl Quorum {
    /// The quorum of a command, and how the reply echoes it.
    fn of(body: &Document) -> Result<(Quorum, Bson), Document> {
        match body.get("commitQuorum") {
            None => Ok((Quorum::VotingMembers, Bson::from("votingMembers"))),
            Some(Bson::String(s)) if s == "votingMembers" => {
                Ok((Quorum::VotingMembers, Bson::from(s.as_str())))
            }
            Some(Bson::String(s)) if s == "majority" => {
                Ok((Quorum::Majority, Bson::from(s.as_str())))
            }
            // `CommitQuorumOptions::parse` takes any number, a fraction dropped
            // (`safeNumberLong`), and the reply writes it back as an int.
            Some(n @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
                let members = integer(n).or_else(|| n.as_f64().map(|f| f as i64));
                match members {
                    Some(m) if (0..=3).contains(&m) => {
                        Ok((Quorum::Members(m as usize), Bson::Int32(m as i32)))
                    }
                    _ => Err(unsatisfiable()),
                }
            }
            Some(other) => {
                let message = format!("Unknown commit quorum: {other}");
                Err(errors::command_error(2, &message, false))
            }
        }
    }

    fn needs(&self, members: usize) -> usize {
        match self {
            Quorum::VotingMembers => members,
            Quorum::Majority => members / 2 + 1,
            Quorum::Members(n) => *n,
        }
    }
}

fn unsatisfiable() -> Document {
    let message = "Not enough data-bearing voting nodes to satisfy commit quorum";
    errors::command_error(278, message, false)
}

impl State {
    /// Moves every two-phase build along: members that have built the index vote, and a
    /// writable primary commits what has its quorum. Returns whether anything changed.
    pub fn progress_index_builds(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let build_time = self.timers.index_build;
        for b in 0..self.index_builds.len() {
            if self.index_builds[b].outcome.is_some() {
                continue;
            }
            let id = self.index_builds[b].id;
            let built = |state: &State, m: usize| {
                let started = state.replica(m).store.builds.get(&id);
                state.can_act(m) && started.is_some_and(|&t| t + build_time <= now)
            };
            let Some(primary) = self.primary().filter(|&p| self.writable_term(p).is_some()) else {
                continue;
            };
            for member in 0..self.members.len() {
                let reaches = member == primary || self.linked(member, primary);
                if reaches && built(self, member) && self.index_builds[b].votes.insert(member) {
                    changed = true;
                }
            }
            let build = &self.index_builds[b];
            let quorum = build.quorum.needs(self.members.len());
            if build.votes.len() >= quorum && built(self, primary) {
                let ns = build.ns.clone();
                let term = self.members[primary].term;
                // Documents written while the index was building were not checked against it;
                // the primary checks them before it commits, and a duplicate aborts the build
                // (7.0 reports build errors at commit: `IndexBuildsCoordinator::
                // _insertKeysFromSideTablesAndCommit` checks the constraint violations it
                // recorded). 7.1 aborts at once for errors other than duplicate keys.
                if let Some(duplicate) = self.duplicate_in_build(primary, &ns, id) {
                    self.log(primary, term, Op::AbortIndexBuild { ns, build: id });
                    self.index_builds[b].outcome = Some(Ended::Aborted);
                    self.index_builds[b].failure = Some(duplicate);
                    changed = true;
                    continue;
                }
                self.log(primary, term, Op::CommitIndexBuild { ns, build: id });
                self.index_builds[b].outcome = Some(Ended::Committed);
                changed = true;
            }
        }
        changed
    }

    /// When the next member finishes building an index it started.
    pub fn next_index_build_step(&self) -> Option<Instant> {
        let build_time = self.timers.index_build;
        let active: Vec<u64> = self
            .index_builds
            .iter()
            .filter(|b| b.outcome.is_none())
            .map(|b| b.id)
            .collect();
        let now = Instant::now();
        self.members
            .iter()
            .flat_map(|m| m.replica.store.builds.iter())
            .filter(|(id, _)| active.contains(id))
            .map(|(_, &started)| started + build_time)
            .filter(|&done| done > now)
            .min()
    }

    /// Whether `member` must hold its replication before applying `op`: a `commitIndexBuild`
    /// of a build it has not finished.
    pub fn holds_at_commit(&self, member: usize, op: &Op, now: Instant) -> bool {
        let Op::CommitIndexBuild { build, .. } = op else {
            return false;
        };
        let started = self.replica(member).store.builds.get(build);
        started.is_some_and(|&t| t + self.timers.index_build > now)
    }
}

/// `createIndexes` on `member`.
pub fn create<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    member: usize,
    incarnation: u64,
    request: &Request,
    passed: &Passed,
) -> Outcome {
    let (term, ns) = match write_target(&state, member, request, "createIndexes") {
        Ok(target) => target,
        Err(refusal) => return respond(&state, member, refusal),
    };
    let (quorum, quorum_given) = match Quorum::of(&request.body) {
        Ok(quorum) => quorum,
        Err(refusal) => return respond(&state, member, refusal),
    };
    let specs = match specs(&request.body) {
        Ok(specs) => specs,
        Err(refusal) => return respond(&state, member, refusal),
    };
    let store = &state.replica(member).store;
    match store.collection(&ns).map(|c| &c.kind) {
        Some(Kind::View { .. }) => {
            let refusal = errors::command_error(166, "Cannot create indexes on a view", false);
            return respond(&state, member, refusal);
        }
        // `timeseries_index_schema_conversion_functions.cpp`.
        Some(Kind::TimeSeries(_)) if specs.iter().any(|spec| spec.unique) => {
            let message = "Unique indexes are not supported on time-series collections";
            return respond(&state, member, errors::command_error(72, message, false));
        }
        _ => {}
    }
    let existed = store.indexes(&ns).map(<[_]>::len);
    let started = Instant::now();
    let deadline = max_time(&request.body).map(|t| started + t);
    let step_downs = state.members[member].step_downs;
    // What is left to build, worked out again after waiting for a build in progress: one that
    // was aborted leaves its index to this command (`typedRun` retries after
    // IndexBuildAlreadyInProgress).
    let new = loop {
        let store = &state.replica(member).store;
        let mut new = Vec::new();
        let mut pending = false;
        for spec in &specs {
            match spec.against(store.indexes(&ns).unwrap_or_default()) {
                Err(refusal) => return respond(&state, member, refusal),
                Ok(Some(existing)) => pending |= existing.building.is_some(),
                Ok(None) => new.push(spec.clone()),
            }
        }
        if !pending {
            break new;
        }
        // A build of the same index in progress: wait for the builds on the collection.
        loop {
            if !is_current(&state, member, incarnation) {
                return Outcome::Gone;
            }
            if state.members[member].step_downs != step_downs {
                return respond(&state, member, errors::interrupted(false));
            }
            let building = state
                .replica(member)
                .store
                .indexes(&ns)
                .is_some_and(|indexes| indexes.iter().any(|i| i.building.is_some()));
            if !building {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return respond(&state, member, errors::max_time_expired());
            }
            state = shared.wait(state, std::time::Duration::from_millis(10));
        }
    };
    let empty = state.replica(member).store.count(&ns) == 0;
    let mut build = None;
    for spec in &new {
        let (field, direction) = &spec.key[0];
        let store = &state.replica(member).store;
        if let Some(dup) = store.duplicate_for(&ns, field, *direction, spec.unique) {
            let mut reply = errors::command_error(
                11000,
                &format!("Index build failed: {}", dup.message()),
                false,
            );
            reply.insert("keyPattern", doc! { field: direction });
            reply.insert("keyValue", doc! { field: dup.value });
            return respond(&state, member, reply);
        }
        let name = Some(spec.name.clone());
        if empty {
            state.ensure_collection(member, term, &ns);
            let op = Op::CreateIndex {
                ns: ns.clone(),
                key: spec.key.clone(),
                unique: spec.unique,
                name,
            };
            state.log(member, term, op);
            continue;
        }
        let id = *build.get_or_insert_with(|| state.register_build(&ns, quorum.clone()));
        let op = Op::StartIndexBuild {
            ns: ns.clone(),
            key: spec.key.clone(),
            unique: spec.unique,
            name,
            build: id,
        };
        state.log(member, term, op);
    }
    if let Some(id) = build {
        shared.settle(&mut state);
        loop {
            if !is_current(&state, member, incarnation) {
                return Outcome::Gone;
            }
            let (uuid, outcome, failure) = {
                let b = state.build(id);
                (b.uuid, b.outcome, b.failure.clone())
            };
            let context = |state: &State| {
                let collection = state.replica(member).store.uuid(&ns).unwrap_or(uuid);
                format!("Index build failed: {uuid}: Collection {ns} ( {collection} )")
            };
            match outcome {
                Some(Ended::Committed) => break,
                Some(Ended::Aborted) => {
                    if let Some(dup) = failure {
                        let message =
                            format!("{} :: caused by :: {}", context(&state), dup.message());
                        let mut reply = errors::command_error(11000, &message, false);
                        reply.insert("keyPattern", doc! { dup.field.as_str(): dup.direction });
                        reply.insert("keyValue", doc! { dup.field.as_str(): dup.value.clone() });
                        return respond(&state, member, reply);
                    }
                    let message =
                        format!("{} :: caused by :: index build aborted", context(&state));
                    return respond(&state, member, errors::command_error(276, &message, false));
                }
                None => {}
            }
            if state.members[member].step_downs != step_downs {
                // The build goes on; the next primary commits it.
                let mut reply = errors::interrupted(false);
                let message = format!(
                    "{} :: caused by :: operation was interrupted",
                    context(&state)
                );
                reply.insert("errmsg", message);
                return respond(&state, member, reply);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let message = format!(
                    "{} :: caused by :: operation exceeded time limit",
                    context(&state)
                );
                state.abort_build(member, term, id);
                shared.settle(&mut state);
                return respond(&state, member, errors::command_error(50, &message, false));
            }
            state = shared.wait(state, std::time::Duration::from_millis(10));
            shared.settle(&mut state);
        }
    }
    let after = state
        .replica(member)
        .store
        .indexes(&ns)
        .map_or(1, <[_]>::len);
    // A new collection has its `_id` index before the build counts.
    let before = existed.unwrap_or(1);
    let mut reply = doc! {
        "numIndexesBefore": before as i32,
        "numIndexesAfter": after as i32,
    };
    if new.is_empty() {
        // `fillCommandResultWithIndexesAlreadyExistInfo` (create_indexes_cmd.cpp): no
        // `createdCollectionAutomatically`, no `commitQuorum`.
        reply.insert("note", "all indexes already exist");
    } else {
        reply.insert("createdCollectionAutomatically", existed.is_none());
        reply.insert("commitQuorum", quorum_given);
        if new.len() < specs.len() {
            reply.insert("note", "index already exists");
        }
    }
    reply.insert("ok", 1.0);
    write_concern::respond_when_met(
        shared,
        state,
        member,
        incarnation,
        term,
        request,
        reply,
        passed,
    )
}

impl State {
    fn register_build(&mut self, ns: &str, quorum: Quorum) -> u64 {
        let id = self.index_builds.len() as u64 + 1;
        self.index_builds.push(Build {
            id,
            uuid: bson::Uuid::new(),
            ns: ns.to_string(),
            quorum,
            votes: HashSet::new(),
            outcome: None,
            failure: None,
        });
        id
    }

    /// A document that breaks a unique index of build `id` on `member`, if any.
    fn duplicate_in_build(&self, member: usize, ns: &str, id: u64) -> Option<Box<DuplicateKey>> {
        let store = &self.replica(member).store;
        let indexes = store.indexes(ns)?;
        indexes
            .iter()
            .filter(|i| i.building == Some(id) && i.unique)
            .find_map(|i| {
                let mut duplicate = store.duplicate_for(ns, &i.field, i.direction, true)?;
                duplicate.index = i.name.clone();
                Some(duplicate)
            })
    }

    fn build(&self, id: u64) -> &Build {
        &self.index_builds[(id - 1) as usize]
    }

    fn abort_build(&mut self, member: usize, term: i64, id: u64) {
        let ns = self.build(id).ns.clone();
        self.log(member, term, Op::AbortIndexBuild { ns, build: id });
        self.index_builds[(id - 1) as usize].outcome = Some(Ended::Aborted);
    }
}

/// One index of the `indexes` argument.
#[derive(Clone)]
struct Spec {
    /// Each field with its direction.
    key: Vec<(String, i32)>,
    unique: bool,
    /// As given, or as the server names it by default.
    name: String,
}

impl Spec {
    /// How the index stands against the collection's `indexes`, as
    /// `IndexCatalogImpl::_doesSpecConflictWithExisting` (index_catalog_impl.cpp) sees it:
    /// `None` to build; the existing index if it is this one already (ready or building); or
    /// the refusal: 86 for a name taken by another key, 85 for the same key under another name
    /// or with other options.
    fn against<'i>(&self, indexes: &'i [Index]) -> Result<Option<&'i Index>, Document> {
        let conflict =
            |code: i32, message: String| Err(errors::command_error(code, &message, false));
        if let Some(existing) = indexes.iter().find(|i| i.name == self.name) {
            let (requested, existing_spec) = (self.spec(), existing.spec());
            if existing.key() != self.key {
                return conflict(
                    86,
                    format!(
                        "An existing index has the same name as the requested index. When \
                         index names are not specified, they are auto generated and can cause \
                         conflicts. Please refer to our documentation. Requested index: \
                         {requested}, existing index: {existing_spec}"
                    ),
                );
            }
            if existing.unique != self.unique {
                return conflict(
                    85,
                    format!(
                        "An equivalent index already exists with the same name but different \
                         options. Requested index: {requested}, existing index: {existing_spec}"
                    ),
                );
            }
            return Ok(Some(existing));
        }
        if let Some(existing) = indexes.iter().find(|i| i.key() == self.key) {
            // Not "Index with name: <name> already exists with a different name", which
            // selfdriving-facts.md quotes: that is the text of 4.2 and before; the 4.4+
            // index_catalog_impl.cpp (r7.0 included) names the existing index instead.
            if existing.unique != self.unique {
                let (requested, existing_spec) = (self.spec(), existing.spec());
                return conflict(
                    85,
                    format!(
                        "An equivalent index already exists with a different name and options. \
                         Requested index: {requested}, existing index: {existing_spec}"
                    ),
                );
            }
            let message = format!(
                "Index already exists with a different name: {}",
                existing.name
            );
            return conflict(85, message);
        }
        Ok(None)
    }

    /// The spec as `listIndexes` shows it, for messages.
    fn spec(&self) -> Document {
        let mut key = Document::new();
        for (field, direction) in &self.key {
            key.insert(field.as_str(), *direction);
        }
        let mut spec = doc! { "v": 2, "key": key, "name": self.name.as_str() };
        if self.unique {
            spec.insert("unique", true);
        }
        spec
    }
}

/// The specs of the `indexes` argument: one field, or several when not unique.
fn specs(body: &Document) -> Result<Vec<Spec>, Document> {
    let specs = body.get_array("indexes").cloned().unwrap_or_default();
    specs
        .iter()
        .filter_map(Bson::as_document)
        .map(|spec| {
            let unique = spec.get_bool("unique").unwrap_or(false);
            let key: Option<Vec<(String, i32)>> = spec.get_document("key").ok().and_then(|k| {
                k.iter()
                    .map(|(f, d)| Some((f.clone(), direction(d)?)))
                    .collect()
            });
            let key = match key {
                Some(key) if key.len() == 1 || (!key.is_empty() && !unique) => key,
                _ => {
                    let message = "the simulated replica set supports only single-field \
                                   indexes and compound indexes that are not unique";
                    return Err(errors::command_error(2, message, false));
                }
            };
            let name = match spec.get("name") {
                None => Index::default_name(&key),
                Some(Bson::String(name)) => name.clone(),
                Some(_) => {
                    let message = "The field 'name' must be a string";
                    return Err(errors::command_error(14, message, false));
                }
            };
            Ok(Spec { key, unique, name })
        })
        .collect()
}

/// 1 or -1, however the number is typed.
fn direction(value: &Bson) -> Option<i32> {
    match integer(value)? {
        1 => Some(1),
        -1 => Some(-1),
        _ => None,
    }
}
