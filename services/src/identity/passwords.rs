//! Password hashing with Argon2id, and verification of the bcrypt hashes of imported
//! accounts (upgraded to Argon2id at their first successful login).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id cost parameters. The defaults are OWASP's minimum recommendation (19 MiB, two
/// passes, one lane); tests lower them to stay fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        PasswordCost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("too many password checks are waiting")]
    Busy,
    #[error("the password workers are gone")]
    WorkersGone,
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The highest bcrypt cost verified (Motience uses 10; each step doubles the work).
pub const MAX_BCRYPT_COST: u32 = 14;

/// The password hash formats nodegrid accepts in its users table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// nodegrid's own: `$argon2id$v=19$…`.
    Argon2,
    /// Imported: `$2a$`, `$2b$` or `$2y$`, a two-digit cost from 04 to 14, then 53 characters
    /// of bcrypt's base64 (salt and hash). Higher costs are refused: one check at cost 31
    /// would hold a password worker for days.
    Bcrypt,
}

impl HashScheme {
    /// The scheme of a stored hash; `None` for anything nodegrid cannot verify.
    pub fn of(stored: &str) -> Option<HashScheme> {
        if stored.starts_with("$argon2") {
            return Some(HashScheme::Argon2);
        }
        let bytes = stored.as_bytes();
        let bcrypt = bytes.len() == 60
            && matches!(&bytes[..4], b"$2a$" | b"$2b$" | b"$2y$")
            && std::str::from_utf8(&bytes[4..6])
                .ok()
                .and_then(|cost| cost.parse::<u32>().ok())
                .is_some_and(|cost| (4..=MAX_BCRYPT_COST).contains(&cost))
            && bytes[6] == b'$'
            && bytes[7..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'));
        bcrypt.then_some(HashScheme::Bcrypt)
    }
}

/// The outcome of a login's password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The password's Argon2id hash, when it matched a hash of an older scheme.
    pub upgraded: Option<String>,
}

/// Hashes and verifies passwords. Both are CPU-heavy by design: call them off the async
/// executor (`spawn_blocking`).
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash of a random password, verified against when the user does not exist, so that
    /// "no such user" takes as long as "wrong password".
    decoy_hash: String,
}

impl PasswordHasher {
    pub fn new(cost: PasswordCost) -> Result<PasswordHasher, PasswordError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|error| PasswordError::Params(error.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = uuid::Uuid::new_v4().to_string();
        let decoy_hash = argon2
            .hash_password(decoy.as_bytes())
            .map_err(|error| PasswordError::Hash(error.to_string()))?
            .to_string();
        Ok(PasswordHasher { argon2, decoy_hash })
    }

    /// The PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`) of `password`, with a fresh salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.argon2
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| PasswordError::Hash(error.to_string()))
    }

    /// Whether `password` matches the stored hash (an Argon2 PHC string, or the bcrypt hash of
    /// an imported account); a malformed stored hash never matches.
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        match HashScheme::of(stored) {
            Some(HashScheme::Argon2) => match PasswordHash::new(stored) {
                Ok(parsed) => self
                    .argon2
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            },
            // bcrypt reads at most 72 bytes of a password; `verify` does the same, as the
            // libraries that made these hashes (Motience's Node.js bcrypt) did.
            Some(HashScheme::Bcrypt) => bcrypt::verify(password, stored).unwrap_or(false),
            None => false,
        }
    }

    /// Verifies like [`verify`](Self::verify); a match against a hash of an older scheme also
    /// brings the password's Argon2id hash, for the caller to store in its place.
    pub fn verify_and_upgrade(&self, password: &str, stored: &str) -> Verification {
        let matches = self.verify(password, stored);
        let upgraded = match HashScheme::of(stored) {
            Some(HashScheme::Bcrypt) if matches => self.hash(password).ok(),
            _ => None,
        };
        Verification { matches, upgraded }
    }

    /// Spends the time of one verification and returns false.
    pub fn verify_decoy(&self, password: &str) -> bool {
        let _ = self.verify(password, &self.decoy_hash);
        false
    }
}

type Job = Box<dyn FnOnce(&PasswordHasher) + Send>;

/// A few long-lived threads that do all hashing and verification.
///
/// Argon2 needs its memory cost (19 MiB by default) per call. Done on ever-changing blocking
/// threads, each thread's allocator arena keeps its own copy, and the process grows by that
/// much per thread; a fixed set of threads reuses theirs. The fixed set also bounds how much
/// CPU a flood of logins can take, and the bounded queue turns a flood into `Busy` errors
/// instead of an ever-growing backlog.
#[derive(Clone)]
pub struct PasswordWorkers {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl PasswordWorkers {
    pub fn start(hasher: PasswordHasher, threads: usize, queue: usize) -> PasswordWorkers {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let hasher = hasher.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{index}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let receiver = receiver
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner());
                            receiver.recv()
                        };
                        match job {
                            Ok(job) => job(&hasher),
                            Err(_) => break,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password worker");
            }
        }
        PasswordWorkers { jobs }
    }

    /// Runs `work` on a worker and returns its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce(&PasswordHasher) -> T + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move |hasher| {
                let _ = reply.send(work(hasher));
            }))
            .map_err(|error| match error {
                std::sync::mpsc::TrySendError::Full(_) => PasswordError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => PasswordError::WorkersGone,
            })?;
        answer.await.map_err(|_| PasswordError::WorkersGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(PasswordCost {
            memory_kib: 1024,
            iterations: 1,
        })
        .unwrap()
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let hasher = cheap();
        let first = hasher.hash("correct horse battery").unwrap();
        let second = hasher.hash("correct horse battery").unwrap();
        assert!(first.starts_with("$argon2id$v=19$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(hasher.verify("correct horse battery", &first));
        assert!(!hasher.verify("wrong", &first));
        assert!(!hasher.verify("correct horse battery", "not a hash"));
        assert!(!hasher.verify_decoy("anything"));
    }

    #[test]
    fn bcrypt_hashes_verify_and_upgrade_to_argon2id() {
        let hasher = cheap();
        let imported = bcrypt::hash_with_salt("pass123", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        assert_eq!(HashScheme::of(&imported), Some(HashScheme::Bcrypt));
        let wrong = hasher.verify_and_upgrade("pass124", &imported);
        assert_eq!(
            wrong,
            Verification {
                matches: false,
                upgraded: None
            }
        );
        let right = hasher.verify_and_upgrade("pass123", &imported);
        assert!(right.matches);
        let upgraded = right.upgraded.unwrap();
        assert_eq!(HashScheme::of(&upgraded), Some(HashScheme::Argon2));
        assert!(hasher.verify("pass123", &upgraded));
        // An Argon2 hash is not upgraded again.
        assert_eq!(
            hasher.verify_and_upgrade("pass123", &upgraded).upgraded,
            None
        );
    }

    #[test]
    fn unknown_hash_formats_are_recognised_as_such() {
        for stored in [
            "",
            "pass123",
            "$1$abc$def",
            "$2x$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
            "$2b$99$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
            "$2b$15$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
            "$2b$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz0123",
            "$2b$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz0123!",
            "sha256:0123",
        ] {
            assert_eq!(HashScheme::of(stored), None, "{stored:?}");
        }
        assert_eq!(
            HashScheme::of("$2b$10$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234"),
            Some(HashScheme::Bcrypt)
        );
    }
}
