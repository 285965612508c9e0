//! The mint journal on disk: `<DATA_DIR>/mint-journal.jsonl`, one JSON object per line.
//!
//! An append is written and `fsync`ed before [`MintJournal::record`] returns, so a journaled
//! token survives a crash of the process; settling an entry rewrites the file (to a sibling,
//! fsync, rename). The directory is created `0700` and the file `0600`: entries carry the
//! token, the very thing the user needs to resume, and nothing else may read it.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use idenfy_core::{
    Nonce,
    journal::{JournalError, JournaledMint, MintJournal},
};

/// The journal file inside the data directory.
pub const JOURNAL_FILE: &str = "mint-journal.jsonl";

/// [`MintJournal`] in a file.
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    entries: Mutex<Vec<JournaledMint>>,
}

impl FileJournal {
    /// Opens (creating if need be) the journal in `dir`, reading what an earlier run left.
    /// A line that cannot be read is reported in the error: it may be a paid token.
    pub fn open(dir: &Path) -> Result<FileJournal, JournalError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| JournalError(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(JOURNAL_FILE);
        let mut entries = Vec::new();
        match File::open(&path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let line =
                        line.map_err(|e| JournalError(format!("reading {}: {e}", path.display())))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let entry = serde_json::from_str(&line).map_err(|e| {
                        JournalError(format!(
                            "{} line {} is not a journal entry ({e}); move the file aside after saving what it holds",
                            path.display(),
                            number + 1
                        ))
                    })?;
                    entries.push(entry);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(JournalError(format!("opening {}: {e}", path.display()))),
        }
        Ok(FileJournal {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn entries(&self) -> MutexGuard<'_, Vec<JournaledMint>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_for(&self, options: &mut OpenOptions, path: &Path) -> Result<File, JournalError> {
        options
            .mode(0o600)
            .open(path)
            .map_err(|e| JournalError(format!("opening {}: {e}", path.display())))
    }
}

fn line_of(entry: &JournaledMint) -> Result<Vec<u8>, JournalError> {
    let mut line =
        serde_json::to_vec(entry).map_err(|e| JournalError(format!("encoding an entry: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

impl MintJournal for FileJournal {
    fn record(&self, mint: &JournaledMint) -> Result<(), JournalError> {
        let line = line_of(mint)?;
        let mut entries = self.entries();
        let mut file = self.open_for(OpenOptions::new().create(true).append(true), &self.path)?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| JournalError(format!("writing {}: {e}", self.path.display())))?;
        entries.push(mint.clone());
        Ok(())
    }

    fn pending(&self) -> Vec<JournaledMint> {
        self.entries().clone()
    }

    fn settle(&self, id: &Nonce) -> Result<(), JournalError> {
        let mut entries = self.entries();
        let kept: Vec<JournaledMint> = entries.iter().filter(|e| &e.id != id).cloned().collect();
        if kept.len() == entries.len() {
            return Ok(());
        }
        let partial = self.path.with_extension("jsonl.partial");
        let mut file = self.open_for(
            OpenOptions::new().create(true).write(true).truncate(true),
            &partial,
        )?;
        for entry in &kept {
            file.write_all(&line_of(entry)?)
                .map_err(|e| JournalError(format!("writing {}: {e}", partial.display())))?;
        }
        file.sync_data()
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|e| JournalError(format!("replacing {}: {e}", self.path.display())))?;
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        *entries = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use idenfy_core::{
        AuthToken, Environment, Nonce, ParentId, RowId, ScanRef,
        journal::{JournaledMint, MintJournal, MintTarget},
    };

    use super::{FileJournal, JOURNAL_FILE};

    fn entry(scan_ref: &str) -> JournaledMint {
        let now = Utc::now();
        JournaledMint {
            id: Nonce::random(),
            environment: Environment::Live,
            parent_id: ParentId::generate(now),
            target: MintTarget::Recovery {
                row_id: RowId::generate(now),
                old_scan_ref: ScanRef::new("old"),
                claim_id: Nonce::random(),
                old_minted_at: None,
                old_status: Some("EXPIRED".to_owned()),
            },
            scan_ref: ScanRef::new(scan_ref),
            auth_token: AuthToken::new(format!("token-of-{scan_ref}")),
            redirect_url: "https://ivs.example/redirect".to_owned(),
            expires_at: Some(now),
            minted_at: now,
            journaled_at: now,
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_settled_ones_are_gone() {
        let dir = std::env::temp_dir().join(format!("idenfy-journal-{}", Nonce::random().as_str()));
        let journal = FileJournal::open(&dir).expect("open");
        let (a, b) = (entry("scan-a"), entry("scan-b"));
        journal.record(&a).expect("record a");
        journal.record(&b).expect("record b");

        let reopened = FileJournal::open(&dir).expect("reopen");
        assert_eq!(
            reopened.pending(),
            vec![a.clone(), b.clone()],
            "as a crash would leave it"
        );
        reopened.settle(&a.id).expect("settle");
        assert_eq!(FileJournal::open(&dir).expect("reopen").pending(), vec![b]);

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(JOURNAL_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read tokens: {mode:o}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_unreadable_line_is_an_error_not_a_silent_loss() {
        let dir = std::env::temp_dir().join(format!("idenfy-journal-{}", Nonce::random().as_str()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(JOURNAL_FILE), "{not json\n").expect("write");
        let error = FileJournal::open(&dir).expect_err("refused");
        assert!(error.to_string().contains("line 1"), "{error}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
