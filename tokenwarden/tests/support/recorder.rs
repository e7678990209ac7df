//! A metrics recorder for tests: installed once for the whole test binary,
//! keeping every series (counters, gauges, histograms) and reading them without
//! resetting them, so that tests running side by side (each with managers of
//! its own keys) never take each other's values.

#![allow(dead_code)] // each test binary uses a part

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, OnceLock};

/// Everything recorded in this process.
pub struct Recorded {
    registry: Registry<Key, AtomicStorage>,
}

struct Installed(Arc<Recorded>);

impl Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.registry.get_or_create_counter(key, Arc::clone))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.registry.get_or_create_gauge(key, Arc::clone))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.registry.get_or_create_histogram(key, Arc::clone))
    }
}

/// The process's recorder, installed on first use.
pub fn recorded() -> &'static Recorded {
    static RECORDED: OnceLock<Arc<Recorded>> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded = Arc::new(Recorded {
            registry: Registry::atomic(),
        });
        metrics::set_global_recorder(Installed(recorded.clone())).unwrap_or_else(|_| {
            panic!("another metrics recorder was installed in this test binary")
        });
        tokenwarden::metrics::describe();
        recorded
    })
}

/// Whether `key` is named `name` and carries every one of `labels`.
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

impl Recorded {
    /// The sum of the counters named `name` that carry all of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.registry.get_counter_handles();
        (counters.iter())
            .filter(|(key, _)| matches(key, name, labels))
            .map(|(_, value)| value.load(SeqCst))
            .sum()
    }

    /// The gauge named `name` with all of `labels` (the first, if several match).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let gauges = self.registry.get_gauge_handles();
        (gauges.iter())
            .find(|(key, _)| matches(key, name, labels))
            .map(|(_, value)| f64::from_bits(value.load(SeqCst)))
    }

    /// The values recorded by the histograms named `name` with all of `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let histograms = self.registry.get_histogram_handles();
        (histograms.iter())
            .filter(|(key, _)| matches(key, name, labels))
            .flat_map(|(_, values)| values.data())
            .collect()
    }

    /// The label sets of every series of any kind: `(name, [(label, value)])`.
    pub fn series(&self) -> Vec<(String, Vec<(String, String)>)> {
        let describe = |key: &Key| {
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()));
            (key.name().to_owned(), labels.collect())
        };
        let mut all: Vec<_> = (self.registry.get_counter_handles().keys().map(describe)).collect();
        all.extend(self.registry.get_gauge_handles().keys().map(describe));
        all.extend(self.registry.get_histogram_handles().keys().map(describe));
        all
    }
}
