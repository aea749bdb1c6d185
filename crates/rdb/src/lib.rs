//! RDB format: see README.
