//! The sink framework every destination shares: consume masked topics, batch, write atomically with
//! offsets through a `Destination` adapter, retry, dead-letter and measure.
