//! What [`publish`](super::publish) reads: the live managers (weak references,
//! so that metrics keep nothing alive), and per set of labels, how many managers
//! carry it and the hits of those already dropped, so that a hit counter never
//! goes back and a set of labels nobody carries any more is forgotten.

use super::Labels;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// What a manager shows when metrics are collected.
#[derive(Debug)]
pub(crate) struct Reading {
    pub(crate) labels: Labels,
    /// Its hits under these labels.
    pub(crate) hits: u64,
    /// Seconds until its token expires (`None`: no token).
    pub(crate) expires_in: Option<f64>,
    pub(crate) backing_off: bool,
    pub(crate) unsaved: bool,
    /// Held by a registry.
    pub(crate) in_registry: bool,
}

/// Something whose state [`publish`](super::publish) reads: a manager.
pub(crate) trait Watched: Send + Sync {
    /// Its state now.
    fn read(&self) -> Reading;
}

/// One set of labels.
#[derive(Default)]
struct Series {
    /// Managers that carry it and have not been retired.
    managers: u64,
    /// The hits of those retired.
    carried: u64,
    /// The hits published so far: only more is added.
    published: u64,
    /// Whether its gauges were published (a manager carried it then).
    shown: bool,
}

#[derive(Default)]
struct Collector {
    managers: Vec<Weak<dyn Watched>>,
    /// Live entries after the last pruning: the list is pruned when it doubles.
    live: usize,
    series: HashMap<Labels, Series>,
}

static COLLECTOR: Mutex<Option<Collector>> = Mutex::new(None);

/// Runs `f` on the collector, under its lock (held briefly: never while the
/// managers are read).
fn with<T>(f: impl FnOnce(&mut Collector) -> T) -> T {
    let mut collector = COLLECTOR.lock().unwrap_or_else(PoisonError::into_inner);
    f(collector.get_or_insert_with(Collector::default))
}

/// Adds a manager carrying `labels` to those [`publish`](super::publish) reads.
pub(crate) fn register(manager: Weak<dyn Watched>, labels: &Labels) {
    with(|c| {
        if c.managers.len() >= 2 * c.live + 64 {
            c.managers.retain(|m| m.strong_count() > 0);
            c.live = c.managers.len();
        }
        c.managers.push(manager);
        c.series.entry(labels.clone()).or_default().managers += 1;
    });
}

/// A manager carrying `labels` leaves them (it is dropped, or takes others)
/// with `hits` counted under them.
pub(crate) fn retire(labels: &Labels, hits: u64) {
    with(|c| {
        let series = c.series.entry(labels.clone()).or_default();
        series.managers = series.managers.saturating_sub(1);
        series.carried += hits;
    });
}

/// A manager now carries `labels` (after [`retire`] under its old ones).
pub(crate) fn relabel(labels: &Labels) {
    with(|c| c.series.entry(labels.clone()).or_default().managers += 1);
}

/// What the managers under one set of labels add up to.
#[derive(Default)]
struct Group {
    hits: u64,
    expires_in: Option<f64>,
    with_token: bool,
    backing_off: u64,
    unsaved: u64,
}

pub(super) fn publish() {
    // Read outside the lock, so that a manager being dropped meanwhile (a
    // registry evicting, under its map's lock) never waits for a collection.
    // The managers read here stay alive until the end: none of them is retired
    // in between, so its hits count as live or as carried, never both.
    let managers: Vec<Weak<dyn Watched>> = with(|c| c.managers.clone());
    let live: Vec<Arc<dyn Watched>> = managers.iter().filter_map(Weak::upgrade).collect();
    drop(managers);
    let mut groups: HashMap<Labels, Group> = HashMap::new();
    let mut in_registries = 0u64;
    for manager in &live {
        let reading = manager.read();
        in_registries += u64::from(reading.in_registry);
        let group = groups.entry(reading.labels).or_default();
        group.hits += reading.hits;
        group.backing_off += u64::from(reading.backing_off);
        group.unsaved += u64::from(reading.unsaved);
        // The soonest expiry of a token still valid (an idle manager's expired
        // token says nothing about the others').
        if let Some(left) = reading.expires_in {
            group.with_token = true;
            if left > 0.0 {
                group.expires_in = Some(group.expires_in.map_or(left, |soonest| soonest.min(left)));
            }
        }
    }
    with(|c| {
        c.managers.retain(|m| m.strong_count() > 0);
        c.live = c.managers.len();
        // Labels no live manager carries: their last hits, and gauges back to 0
        // where they were shown.
        let gone: Vec<Labels> = (c.series.keys())
            .filter(|l| !groups.contains_key(*l))
            .cloned()
            .collect();
        let mut all: Vec<(Labels, Option<Group>)> =
            groups.into_iter().map(|(l, g)| (l, Some(g))).collect();
        all.extend(gone.into_iter().map(|l| (l, None)));
        for (labels, group) in all {
            let series = c.series.entry(labels.clone()).or_default();
            let live = group.as_ref().map_or(0, |g| g.hits);
            let new = (live + series.carried).saturating_sub(series.published);
            series.published += new;
            let names = labels.to_vec();
            if new > 0 {
                ::metrics::counter!(super::HITS, names.clone()).increment(new);
            }
            let group = match group {
                Some(group) => group,
                None if series.shown => Group::default(),
                None => continue,
            };
            series.shown = true;
            ::metrics::gauge!(super::BACKING_OFF, names.clone()).set(group.backing_off as f64);
            ::metrics::gauge!(super::UNSAVED, names.clone()).set(group.unsaved as f64);
            // No valid token under these labels: nothing left until an expiry.
            if group.with_token || series.managers == 0 {
                let left = group.expires_in.unwrap_or(0.0);
                ::metrics::gauge!(super::TOKEN_EXPIRES_IN, names).set(left);
            }
        }
        // Labels no manager carries any more, all their hits published: forgotten
        // (a manager that takes them later starts them again, by increments).
        c.series
            .retain(|_, s| s.managers > 0 || s.carried > s.published);
        ::metrics::gauge!(super::REGISTRY_MANAGERS).set(in_registries as f64);
    });
    drop(live);
}
