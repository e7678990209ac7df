//! What [`publish`](super::publish) reads: the live managers and registries
//! (weak references, so that metrics keep nothing alive), and the hits of the
//! managers already dropped, so that a hit counter never goes back.

use super::Labels;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// What a manager shows when metrics are collected.
#[derive(Debug)]
pub(crate) struct Reading {
    pub(crate) labels: Labels,
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

#[derive(Default)]
struct Collector {
    managers: Vec<Weak<dyn Watched>>,
    /// Live entries after the last pruning: the list is pruned when it doubles.
    live: usize,
    /// The hits of dropped managers, by their labels.
    carried: HashMap<Labels, u64>,
    /// The hits published so far for each set of labels: only more is added (a
    /// manager dropped while a collection runs is neither live nor carried yet
    /// for a moment: its hits are added at the next).
    published: HashMap<Labels, u64>,
}

static COLLECTOR: Mutex<Option<Collector>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Collector) -> T) -> T {
    let mut collector = COLLECTOR.lock().unwrap_or_else(PoisonError::into_inner);
    f(collector.get_or_insert_with(Collector::default))
}

/// Adds a manager to those [`publish`](super::publish) reads.
pub(crate) fn register(manager: Weak<dyn Watched>) {
    with(|c| {
        if c.managers.len() >= 2 * c.live + 64 {
            c.managers.retain(|m| m.strong_count() > 0);
            c.live = c.managers.len();
        }
        c.managers.push(manager);
    });
}

/// Keeps the hits of a manager being dropped.
pub(crate) fn retire(labels: &Labels, hits: u64) {
    with(|c| *c.carried.entry(labels.clone()).or_default() += hits);
}

/// What the managers under one set of labels add up to.
#[derive(Default)]
struct Group {
    hits: u64,
    expires_in: Option<f64>,
    backing_off: u64,
    unsaved: u64,
}

pub(super) fn publish() {
    // Upgraded under the lock (so that none of them is retired meanwhile), and
    // dropped after it: a last reference dropped here retires its manager,
    // which takes the lock.
    let mut live: Vec<Arc<dyn Watched>> = Vec::new();
    with(|c| {
        live.extend(c.managers.iter().filter_map(Weak::upgrade));
        c.managers.retain(|m| m.strong_count() > 0);
        c.live = c.managers.len();
        let mut groups: HashMap<Labels, Group> = HashMap::new();
        let mut in_registries = 0u64;
        for manager in &live {
            let reading = manager.read();
            in_registries += u64::from(reading.in_registry);
            let group = groups.entry(reading.labels).or_default();
            group.hits += reading.hits;
            group.backing_off += u64::from(reading.backing_off);
            group.unsaved += u64::from(reading.unsaved);
            if let Some(left) = reading.expires_in {
                group.expires_in = Some(group.expires_in.map_or(left, |soonest| soonest.min(left)));
            }
        }
        // Labels whose managers are all gone: their hits stay, their gauges are 0.
        for labels in c.carried.keys() {
            groups.entry(labels.clone()).or_default();
        }
        for (labels, group) in groups {
            let hits = group.hits + c.carried.get(&labels).copied().unwrap_or(0);
            let last = c.published.entry(labels.clone()).or_default();
            // Added as what is new since the last collection, not set: every
            // exporter takes increments (OpenTelemetry's counters take nothing else).
            let new = hits.saturating_sub(*last);
            *last += new;
            let series = labels.to_vec();
            if new > 0 {
                ::metrics::counter!(super::HITS, series.clone()).increment(new);
            }
            ::metrics::gauge!(super::BACKING_OFF, series.clone()).set(group.backing_off as f64);
            ::metrics::gauge!(super::UNSAVED, series.clone()).set(group.unsaved as f64);
            if let Some(left) = group.expires_in {
                ::metrics::gauge!(super::TOKEN_EXPIRES_IN, series).set(left);
            }
        }
        ::metrics::gauge!(super::REGISTRY_MANAGERS).set(in_registries as f64);
    });
    drop(live);
}
