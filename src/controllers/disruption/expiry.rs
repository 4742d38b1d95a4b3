//! Expiry (`ttlSecondsUntilExpired`): a node older than its provisioner's TTL is replaced —
//! the capacity its pods need is launched first when they would not fit on the other nodes —
//! then deleted. Oldest first. Pure.

use std::time::{Duration, SystemTime};

use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::labels;

use super::candidates::{Blocked, Candidate};
use super::command::{Command, Reason};
use super::simulate;
use crate::state::{ClusterState, NodeEntry};

/// The provisioner's `ttlSecondsUntilExpired` for `node`, if it sets one.
pub fn ttl(state: &ClusterState, node: &NodeEntry) -> Option<Duration> {
    let provisioner = node.core.labels.get(labels::PROVISIONER_NAME)?;
    let seconds = state
        .provisioner(provisioner)?
        .provisioner
        .spec
        .ttl_seconds_until_expired?;
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// How old `created` is at `now` when that is at least `ttl`.
pub fn expired_for(
    created: Option<SystemTime>,
    ttl: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let age = now.duration_since(created?).unwrap_or_default();
    (age >= ttl).then_some(age)
}

/// Whether `node` has outlived its provisioner's TTL at `now`.
pub fn is_expired(state: &ClusterState, node: &NodeEntry, now: SystemTime) -> bool {
    let created = node
        .node
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| SystemTime::from(t.0));
    ttl(state, node).is_some_and(|ttl| expired_for(created, ttl, now).is_some())
}

/// The first expired candidate (oldest first) that can be replaced, with its command;
/// `expired` pairs each candidate with its TTL. The older ones that cannot be replaced are
/// added to `unreplaceable`, so their owners learn why they stay.
pub fn expire(
    base: &mut ScheduleInput,
    expired: &mut [(Candidate, Duration)],
    now: SystemTime,
    unreplaceable: &mut Vec<Blocked>,
) -> Option<Command> {
    expired.sort_by(|(a, _), (b, _)| a.created.cmp(&b.created).then_with(|| a.node.cmp(&b.node)));
    expired.iter().find_map(|(candidate, ttl)| {
        evaluate(base, candidate, *ttl, now)
            .map_err(|why| unreplaceable.push(Blocked::cannot_replace(&candidate.node, &why)))
            .ok()
    })
}

/// Replace-or-delete for one node past `ttl`; why not when its pods could go nowhere.
pub fn evaluate(
    base: &mut ScheduleInput,
    candidate: &Candidate,
    ttl: Duration,
    now: SystemTime,
) -> Result<Command, String> {
    let age = expired_for(candidate.created, ttl, now)
        .ok_or_else(|| format!("node {} has not expired", candidate.node))?;
    let detail = format!(
        "{}s old, ttlSecondsUntilExpired {}",
        age.as_secs(),
        ttl.as_secs()
    );
    simulate::replace_or_delete(base, candidate, Reason::Expiration, detail)
}
