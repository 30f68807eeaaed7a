//! Bucket default encryption: the PutBucketEncryption document, parsed,
//! validated and written back.

use quick_xml::{
    Reader,
    events::{BytesRef, Event},
};

use super::SseError;

/// The encryption a bucket applies to writes that ask for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultAlgorithm {
    /// `AES256`: SSE-S3.
    S3,
    /// `aws:kms`: SSE-KMS, under `key_id` or the server's default key.
    Kms {
        /// `KMSMasterKeyID`, if given.
        key_id: Option<String>,
    },
}

/// A bucket's default encryption (one `ServerSideEncryptionConfiguration`
/// rule, as AWS allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `SSEAlgorithm` and `KMSMasterKeyID`.
    pub algorithm: DefaultAlgorithm,
    /// `BucketKeyEnabled`: SSE-KMS writes use a bucket key unless a request
    /// says otherwise. Ignored for SSE-S3, as in AWS.
    pub bucket_key_enabled: bool,
}

const ROOT: &str = "ServerSideEncryptionConfiguration";
const RULE: &str = "Rule";
const APPLY: &str = "ApplyServerSideEncryptionByDefault";
const ALGORITHM: &str = "SSEAlgorithm";
const KEY_ID: &str = "KMSMasterKeyID";
const BUCKET_KEY: &str = "BucketKeyEnabled";

impl BucketEncryption {
    /// Validates the fields of a rule: `SSEAlgorithm` is `AES256` or
    /// `aws:kms` (`aws:kms:dsse` is not implemented), and `KMSMasterKeyID`
    /// only comes with `aws:kms`.
    pub fn new(
        sse_algorithm: &str,
        kms_master_key_id: Option<&str>,
        bucket_key_enabled: Option<bool>,
    ) -> Result<Self, SseError> {
        let key_id = kms_master_key_id.map(str::trim).filter(|id| !id.is_empty());
        let algorithm = match sse_algorithm.trim() {
            "AES256" if key_id.is_some() => {
                return Err(SseError::InvalidBucketEncryption(
                    "KMSMasterKeyID is only allowed with SSEAlgorithm aws:kms",
                ));
            }
            "AES256" => DefaultAlgorithm::S3,
            "aws:kms" => DefaultAlgorithm::Kms {
                key_id: key_id.map(str::to_owned),
            },
            "aws:kms:dsse" => return Err(SseError::DsseNotImplemented),
            _ => {
                return Err(SseError::InvalidBucketEncryption(
                    "SSEAlgorithm must be AES256 or aws:kms",
                ));
            }
        };
        Ok(Self {
            algorithm,
            bucket_key_enabled: bucket_key_enabled.unwrap_or(false),
        })
    }

    /// Parses a `ServerSideEncryptionConfiguration` document (the body of
    /// PutBucketEncryption, or what [`to_xml`](Self::to_xml) wrote).
    /// Namespaces are ignored; unknown elements are skipped, so newer AWS
    /// fields do not break it; a known element twice is malformed.
    pub fn from_xml(xml: &str) -> Result<Self, SseError> {
        let malformed = SseError::MalformedBucketEncryption;
        // Not `trim_text`: it trims each text event, and an entity splits
        // the text into several, so "a &amp; b" would lose its spaces.
        // Values are trimmed whole at their closing tag instead.
        let mut reader = Reader::from_str(xml);
        let mut scan = Scan::default();
        loop {
            let event = reader
                .read_event()
                .map_err(|_| malformed("not well-formed XML"))?;
            match event {
                Event::Start(start) => {
                    let name = std::str::from_utf8(start.local_name().into_inner())
                        .map_err(|_| malformed("an element name is not UTF-8"))?
                        .to_owned();
                    scan.start(name)?;
                }
                Event::Empty(_) if scan.path.is_empty() => {
                    return Err(malformed("an empty configuration"));
                }
                Event::Text(t) => scan.text.push_str(
                    &t.xml10_content()
                        .map_err(|_| malformed("text is not UTF-8"))?,
                ),
                Event::CData(t) => scan
                    .text
                    .push_str(&t.decode().map_err(|_| malformed("text is not UTF-8"))?),
                Event::GeneralRef(r) => scan.text.push(entity(&r)?),
                Event::End(_) => scan.end()?,
                Event::Eof => break,
                _ => {}
            }
        }
        scan.finish()
    }

    /// The configuration as GetBucketEncryption returns it.
    pub fn to_xml(&self) -> String {
        let (algorithm, key_id) = match &self.algorithm {
            DefaultAlgorithm::S3 => ("AES256", None),
            DefaultAlgorithm::Kms { key_id } => ("aws:kms", key_id.as_deref()),
        };
        let key_id = key_id
            .map(|id| format!("<{KEY_ID}>{}</{KEY_ID}>", quick_xml::escape::escape(id)))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <{ROOT} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><{RULE}>\
             <{APPLY}><{ALGORITHM}>{algorithm}</{ALGORITHM}>{key_id}</{APPLY}>\
             <{BUCKET_KEY}>{}</{BUCKET_KEY}></{RULE}></{ROOT}>",
            self.bucket_key_enabled
        )
    }
}

/// What [`BucketEncryption::from_xml`] has read so far.
#[derive(Debug, Default)]
struct Scan {
    /// The open elements, root first.
    path: Vec<String>,
    /// The text of the innermost element, trimmed at its end.
    text: String,
    rules: usize,
    applies: usize,
    algorithm: Option<String>,
    key_id: Option<String>,
    bucket_key: Option<String>,
}

impl Scan {
    fn start(&mut self, name: String) -> Result<(), SseError> {
        if self.path.is_empty() && name != ROOT {
            return Err(SseError::MalformedBucketEncryption(
                "the root is not ServerSideEncryptionConfiguration",
            ));
        }
        match (self.path.len(), name.as_str()) {
            (1, RULE) => self.rules += 1,
            (2, APPLY) if self.path[1] == RULE => self.applies += 1,
            _ => {}
        }
        self.path.push(name);
        self.text.clear();
        Ok(())
    }

    /// An element closes: its text goes to the field it names, if any.
    fn end(&mut self) -> Result<(), SseError> {
        let at: Vec<&str> = self.path.iter().map(String::as_str).collect();
        let value = std::mem::take(&mut self.text).trim().to_owned();
        let slot = match at.as_slice() {
            [ROOT, RULE, APPLY, ALGORITHM] => Some(&mut self.algorithm),
            [ROOT, RULE, APPLY, KEY_ID] => Some(&mut self.key_id),
            [ROOT, RULE, BUCKET_KEY] => Some(&mut self.bucket_key),
            _ => None,
        };
        if let Some(slot) = slot
            && slot.replace(value).is_some()
        {
            return Err(SseError::MalformedBucketEncryption(
                "an element appears twice",
            ));
        }
        self.path.pop();
        Ok(())
    }

    /// The document has ended: checks its shape and validates the rule.
    fn finish(self) -> Result<BucketEncryption, SseError> {
        let malformed = SseError::MalformedBucketEncryption;
        if !self.path.is_empty() {
            return Err(malformed("the document ends inside an element"));
        }
        if self.rules != 1 {
            return Err(malformed("exactly one Rule is required"));
        }
        if self.applies != 1 {
            return Err(malformed(
                "the Rule needs one ApplyServerSideEncryptionByDefault",
            ));
        }
        let algorithm = self.algorithm.ok_or(malformed("SSEAlgorithm is missing"))?;
        let bucket_key = match self.bucket_key.as_deref().map(str::trim) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(malformed("BucketKeyEnabled must be true or false")),
        };
        BucketEncryption::new(&algorithm, self.key_id.as_deref(), bucket_key)
    }
}

/// The character an entity or character reference stands for: only the
/// five XML entities are known (a document has no DTD to define more).
fn entity(r: &BytesRef<'_>) -> Result<char, SseError> {
    let malformed = SseError::MalformedBucketEncryption;
    match r.resolve_char_ref() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => match r.decode().as_deref() {
            Ok("amp") => Ok('&'),
            Ok("lt") => Ok('<'),
            Ok("gt") => Ok('>'),
            Ok("quot") => Ok('"'),
            Ok("apos") => Ok('\''),
            _ => Err(malformed("an unknown entity")),
        },
        Err(_) => Err(malformed("an invalid character reference")),
    }
}
