//! The ThanosReceiver operator.
