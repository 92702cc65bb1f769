//! The tuning knobs of a transport and their limits.

use std::time::Duration;

// Only for the links in the docs.
#[cfg(doc)]
use super::{SendError, Transport};

/// Tuning of a [`Transport`]. Every member of a cluster should use the same
/// `max_frame_bytes`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransportOptions {
    /// The largest frame sent or received. A received header announcing more closes the
    /// connection; [`Transport::send`] refuses a larger frame with [`SendError::TooLarge`].
    /// Default 4 MiB; at most `u32::MAX`.
    pub max_frame_bytes: usize,
    /// Frames queued for one peer, the batch being written included; beyond it
    /// [`Transport::send`] returns [`SendError::QueueFull`]. Default 4096.
    pub queue_frames: usize,
    /// Bytes of payload queued for one peer, the batch being written included. Default
    /// 64 MiB; at least `max_frame_bytes`.
    pub queue_bytes: usize,
    /// How long a dial may take to connect. Default 1 s.
    pub connect_timeout: Duration,
    /// How long either side may take to complete the handshake. Default 2 s.
    pub handshake_timeout: Duration,
    /// The shortest wait before redialing a peer. Default 20 ms.
    pub backoff_min: Duration,
    /// The longest wait before redialing a peer. Default 1 s.
    pub backoff_max: Duration,
    /// Accepted connections still in their handshake at once; a connection beyond it is
    /// closed at once. Default 32.
    pub max_unauthenticated: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            max_frame_bytes: 4 << 20,
            queue_frames: 4096,
            queue_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            max_unauthenticated: 32,
        }
    }
}

impl TransportOptions {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_frame_bytes == 0 || u32::try_from(self.max_frame_bytes).is_err() {
            return Err(format!(
                "max_frame_bytes is {}, must be in 1..=u32::MAX",
                self.max_frame_bytes
            ));
        }
        if self.queue_frames == 0 {
            return Err("queue_frames must be at least 1".into());
        }
        if self.queue_bytes < self.max_frame_bytes {
            // Otherwise a frame between the two could never be queued.
            return Err(format!(
                "queue_bytes ({}) must be at least max_frame_bytes ({})",
                self.queue_bytes, self.max_frame_bytes
            ));
        }
        // Zero timeouts are errors for the socket calls, and zero backoff would spin.
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("backoff_min", self.backoff_min),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must not be zero"));
            }
        }
        if self.backoff_max < self.backoff_min {
            return Err(format!(
                "backoff_max ({:?}) is below backoff_min ({:?})",
                self.backoff_max, self.backoff_min
            ));
        }
        if self.max_unauthenticated == 0 {
            return Err("max_unauthenticated must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid() {
        TransportOptions::default().check().expect("defaults");
    }

    #[test]
    fn invalid_options_are_refused() {
        let d = TransportOptions::default();
        let cases = [
            TransportOptions {
                max_frame_bytes: 0,
                ..d.clone()
            },
            TransportOptions {
                queue_frames: 0,
                ..d.clone()
            },
            TransportOptions {
                queue_bytes: d.max_frame_bytes - 1,
                ..d.clone()
            },
            TransportOptions {
                handshake_timeout: Duration::ZERO,
                ..d.clone()
            },
            TransportOptions {
                backoff_max: Duration::from_millis(1),
                ..d.clone()
            },
            TransportOptions {
                max_unauthenticated: 0,
                ..d.clone()
            },
        ];
        for o in cases {
            assert!(o.check().is_err(), "{o:?}");
        }
    }
}
