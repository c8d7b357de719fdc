//! An error's message with the error that caused it, kept as a value: the one way the layers
//! below `app` carry a cause (a database's, NATS's, the file system's, a decoder's) without
//! flattening it into a string.

/// What an error says, and the error that caused it when there is one (a database's, NATS's,
/// the file system's, a decoder's), kept as a value (`StoreError::cause`, `BusError::cause`,
/// `Cause::source`) rather than lost in the text. The message already says what the cause
/// said, so an error holding a `Cause` does not chain it into its own `source()`: a report
/// printing the chain would say it twice.
/// It reads as its message (`Deref<Target = str>`).
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A message with the error behind it.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Cause {
        Cause {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The same cause, its message preceded by `context` (what was being done).
    pub fn prefixed(self, context: &str) -> Cause {
        Cause {
            message: format!("{context}{}", self.message),
            source: self.source,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl std::ops::Deref for Cause {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        Cause::from(message.to_string())
    }
}
