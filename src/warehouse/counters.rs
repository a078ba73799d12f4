//! Counts of BigQuery requests issued, by kind. Every attempt counts, retries included, so the
//! figures are what BigQuery actually saw. Exposed on `/metrics` and read by tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A SELECT (or other read-only statement) sent to `jobs.query`.
    Query,
    /// An INSERT / UPDATE / DELETE / MERGE sent to `jobs.query`.
    Dml,
    /// A `tabledata.insertAll` streaming insert.
    InsertAll,
    /// Dataset and table metadata calls (get, create, patch, list).
    Metadata,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Query => "query",
            JobKind::Dml => "dml",
            JobKind::InsertAll => "insert_all",
            JobKind::Metadata => "metadata",
        }
    }
}

#[derive(Debug, Default)]
pub struct JobCounters {
    query: AtomicU64,
    dml: AtomicU64,
    insert_all: AtomicU64,
    metadata: AtomicU64,
    retries: AtomicU64,
    failed: [AtomicU64; 4],
}

/// A point-in-time copy of the counters; subtract two to measure one operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobCounts {
    pub query: u64,
    pub dml: u64,
    pub insert_all: u64,
    pub metadata: u64,
    pub retries: u64,
    /// Attempts of each kind that failed (included in the totals above).
    pub failed_query: u64,
    pub failed_dml: u64,
    pub failed_insert_all: u64,
    pub failed_metadata: u64,
}

impl JobCounts {
    /// Jobs that ran SQL or streamed rows (metadata calls excluded).
    pub fn jobs(&self) -> u64 {
        self.query + self.dml + self.insert_all
    }

    pub fn since(&self, earlier: &JobCounts) -> JobCounts {
        JobCounts {
            query: self.query - earlier.query,
            dml: self.dml - earlier.dml,
            insert_all: self.insert_all - earlier.insert_all,
            metadata: self.metadata - earlier.metadata,
            retries: self.retries - earlier.retries,
            failed_query: self.failed_query - earlier.failed_query,
            failed_dml: self.failed_dml - earlier.failed_dml,
            failed_insert_all: self.failed_insert_all - earlier.failed_insert_all,
            failed_metadata: self.failed_metadata - earlier.failed_metadata,
        }
    }
}

impl JobCounters {
    pub fn record(&self, kind: JobKind) {
        let counter = match kind {
            JobKind::Query => &self.query,
            JobKind::Dml => &self.dml,
            JobKind::InsertAll => &self.insert_all,
            JobKind::Metadata => &self.metadata,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self, kind: JobKind) {
        let i = match kind {
            JobKind::Query => 0,
            JobKind::Dml => 1,
            JobKind::InsertAll => 2,
            JobKind::Metadata => 3,
        };
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> JobCounts {
        JobCounts {
            query: self.query.load(Ordering::Relaxed),
            dml: self.dml.load(Ordering::Relaxed),
            insert_all: self.insert_all.load(Ordering::Relaxed),
            metadata: self.metadata.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failed_query: self.failed[0].load(Ordering::Relaxed),
            failed_dml: self.failed[1].load(Ordering::Relaxed),
            failed_insert_all: self.failed[2].load(Ordering::Relaxed),
            failed_metadata: self.failed[3].load(Ordering::Relaxed),
        }
    }
}
