//! BSON ↔ domain conversions shared by the stores: ids, dates, counters, and a reader that
//! turns a malformed document into `StoreError::Corrupt` instead of panicking.

use idenfy_core::{StoreError, Timestamp};
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};

use crate::Error;

/// An id as stored: id-server writes ObjectIds; our ids are their 24-hex rendering.
pub(crate) fn object_id(hex: &str, what: &'static str) -> Result<ObjectId, StoreError> {
    ObjectId::parse_str(hex).map_err(|error| {
        StoreError::from(Error::Encode {
            what,
            reason: error.to_string(),
        })
    })
}

/// A filter value matching an id stored as an ObjectId (id-server, us) or, tolerated, as its
/// hex string (documents written by hand or by other tools).
pub(crate) fn id_match(hex: &str, what: &'static str) -> Result<Bson, StoreError> {
    let oid = object_id(hex, what)?;
    Ok(Bson::Document(doc! { "$in": [oid, hex] }))
}

/// A BSON date (millisecond precision), never a string: range queries and id-server rely on it.
pub(crate) fn date(ts: Timestamp) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(ts.timestamp_millis()))
}

/// A counter as the Node driver writes small integers (int32), int64 beyond.
pub(crate) fn count(n: u32) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(i64::from(n)), Bson::Int32)
}

/// `field` is absent, null, or earlier than `before` (for "no live claim", "poll due").
pub(crate) fn absent_or_before(field: &str, before: Timestamp) -> Document {
    doc! { "$or": [
        { field: { "$exists": false } },
        { field: Bson::Null },
        { field: { "$lt": date(before) } },
    ] }
}

/// `field` is absent, null, or a number below `limit` (absent counts as 0).
pub(crate) fn absent_or_below(field: &str, limit: u32) -> Document {
    doc! { "$or": [
        { field: { "$exists": false } },
        { field: Bson::Null },
        { field: { "$lt": i64::from(limit) } },
    ] }
}

/// Reads fields of one stored document, naming the document and the field in every
/// `Corrupt` error. Absent and `null` are the same thing on read.
pub(crate) struct Reader<'a> {
    doc: &'a Document,
    id: &'a str,
    path: String,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(doc: &'a Document, id: &'a str) -> Self {
        Reader {
            doc,
            id,
            path: String::new(),
        }
    }

    /// The `_id` of a document rendered for error messages.
    pub(crate) fn describe_id(doc: &Document) -> String {
        match doc.get("_id") {
            Some(Bson::ObjectId(oid)) => oid.to_hex(),
            Some(Bson::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "<no _id>".to_owned(),
        }
    }

    /// A reader for an embedded document.
    pub(crate) fn nested(&self, doc: &'a Document, field: &str) -> Reader<'a> {
        Reader {
            doc,
            id: self.id,
            path: format!("{}{field}.", self.path),
        }
    }

    pub(crate) fn corrupt(&self, field: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: self.id.to_owned(),
            reason: format!("`{}{field}` {reason}", self.path),
        }
    }

    fn value(&self, field: &str) -> Option<&'a Bson> {
        match self.doc.get(field) {
            None | Some(Bson::Null | Bson::Undefined) => None,
            Some(value) => Some(value),
        }
    }

    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<&'a str>, StoreError> {
        match self.value(field) {
            None => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not a string", other.element_type()),
            )),
        }
    }

    pub(crate) fn str(&self, field: &str) -> Result<&'a str, StoreError> {
        self.opt_str(field)?
            .ok_or_else(|| self.corrupt(field, "is missing"))
    }

    /// An id stored as an ObjectId or (tolerated) as a 24-hex string, as lowercase hex.
    pub(crate) fn opt_id_hex(&self, field: &str) -> Result<Option<String>, StoreError> {
        match self.value(field) {
            None => Ok(None),
            Some(Bson::ObjectId(oid)) => Ok(Some(oid.to_hex())),
            Some(Bson::String(s)) => match ObjectId::parse_str(s) {
                Ok(oid) => Ok(Some(oid.to_hex())),
                Err(_) => Err(self.corrupt(field, "is a string that is not an ObjectId")),
            },
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not an ObjectId", other.element_type()),
            )),
        }
    }

    pub(crate) fn id_hex(&self, field: &str) -> Result<String, StoreError> {
        self.opt_id_hex(field)?
            .ok_or_else(|| self.corrupt(field, "is missing"))
    }

    /// A BSON date; an RFC 3339 string is tolerated.
    pub(crate) fn opt_date(&self, field: &str) -> Result<Option<Timestamp>, StoreError> {
        match self.value(field) {
            None => Ok(None),
            Some(Bson::DateTime(date)) => {
                chrono::DateTime::from_timestamp_millis(date.timestamp_millis())
                    .map(Some)
                    .ok_or_else(|| self.corrupt(field, "is a date out of range"))
            }
            Some(Bson::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|date| Some(date.to_utc()))
                .map_err(|_| self.corrupt(field, "is a string that is not a date")),
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not a date", other.element_type()),
            )),
        }
    }

    pub(crate) fn date(&self, field: &str) -> Result<Timestamp, StoreError> {
        self.opt_date(field)?
            .ok_or_else(|| self.corrupt(field, "is missing"))
    }

    /// A non-negative integer counter; absent counts as 0. Mongoose may have written a double.
    pub(crate) fn count(&self, field: &str) -> Result<u32, StoreError> {
        let raw = match self.value(field) {
            None => return Ok(0),
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(f)) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15 => {
                // Exact: an integral double below 2^53 converts without loss.
                #[allow(clippy::cast_possible_truncation)]
                let n = *f as i64;
                n
            }
            Some(other) => {
                return Err(self.corrupt(
                    field,
                    format!("is a {:?}, not an integer", other.element_type()),
                ));
            }
        };
        u32::try_from(raw).map_err(|_| self.corrupt(field, format!("is {raw}, not a count")))
    }

    /// A boolean flag; absent counts as false.
    pub(crate) fn flag(&self, field: &str) -> Result<bool, StoreError> {
        match self.value(field) {
            None => Ok(false),
            Some(Bson::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not a boolean", other.element_type()),
            )),
        }
    }

    pub(crate) fn opt_doc(&self, field: &str) -> Result<Option<&'a Document>, StoreError> {
        match self.value(field) {
            None => Ok(None),
            Some(Bson::Document(doc)) => Ok(Some(doc)),
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not a document", other.element_type()),
            )),
        }
    }

    /// The embedded documents of an array field; absent is empty.
    pub(crate) fn docs(&self, field: &str) -> Result<Vec<&'a Document>, StoreError> {
        match self.value(field) {
            None => Ok(Vec::new()),
            Some(Bson::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Bson::Document(doc) => Ok(doc),
                    other => Err(self.corrupt(
                        &format!("{field}.{index}"),
                        format!("is a {:?}, not a document", other.element_type()),
                    )),
                })
                .collect(),
            Some(other) => Err(self.corrupt(
                field,
                format!("is a {:?}, not an array", other.element_type()),
            )),
        }
    }
}
