//! What BigQuery work costs, and who it is for. On BigQuery the bill is bytes: every job Quarry
//! creates is labelled with the org, pipeline, run and step it serves (`labels`), and a step may
//! cap what each of its jobs bills (`cap`); background reads slow down while they find nothing
//! (`cadence`). What bytes cost in dollars is one setting (`price`).

pub mod cadence;
pub mod cap;
pub mod labels;
pub mod price;
