//! The tokio adapters, including over a pipe that hands out a few bytes at
//! a time (so every `Pending` path runs), agree with the std ones.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::stream::HEADER_LEN;

const LOG2: u8 = 7;

fn plaintext() -> Vec<u8> {
    data(5 * (1 << LOG2) + 17, 5)
}

#[tokio::test]
async fn async_writer_and_reader_round_trip() {
    let plaintext = plaintext();
    let encryptor = Encryptor::new(&key(), BINDING, PartNumber::SINGLE, chunk(LOG2)).unwrap();
    let mut writer = encryptor.async_writer(Vec::new());
    for piece in plaintext.chunks(33) {
        writer.write_all(piece).await.unwrap();
    }
    assert_eq!(writer.info(), None, "info before shutdown");
    writer.shutdown().await.unwrap();
    let info = writer.info().unwrap();
    let stored = writer.into_inner();
    let layout = Layout::seal(&key(), BINDING, [info]).unwrap();
    // The std reader reads what the tokio writer wrote.
    assert_eq!(decrypt(&layout, &stored).unwrap(), plaintext);

    let decryptor = Decryptor::new(&key(), BINDING, &layout).unwrap();
    let mut out = Vec::new();
    decryptor
        .async_reader(&stored[..])
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out, plaintext);

    let mut writer = decryptor.async_writer(Vec::new());
    for piece in stored.chunks(29) {
        writer.write_all(piece).await.unwrap();
    }
    writer.shutdown().await.unwrap();
    assert_eq!(writer.into_inner(), plaintext);
}

#[tokio::test]
async fn async_encrypting_reader_through_a_narrow_pipe() {
    let plaintext = plaintext();
    let (mut tx, rx) = tokio::io::duplex(7);
    let source = plaintext.clone();
    let feeder = tokio::spawn(async move {
        tx.write_all(&source).await.unwrap();
    });
    let encryptor = Encryptor::new(&key(), BINDING, PartNumber::SINGLE, chunk(LOG2)).unwrap();
    let mut reader = encryptor.async_reader(rx);
    let mut stored = Vec::new();
    reader.read_to_end(&mut stored).await.unwrap();
    feeder.await.unwrap();
    let layout = Layout::seal(&key(), BINDING, [reader.info().unwrap()]).unwrap();
    assert_eq!(decrypt(&layout, &stored).unwrap(), plaintext);

    // Decrypt through another narrow pipe, consuming via AsyncBufRead.
    let (mut tx, rx) = tokio::io::duplex(5);
    let feeder = tokio::spawn(async move {
        tx.write_all(&stored).await.unwrap();
    });
    let decryptor = Decryptor::new(&key(), BINDING, &layout).unwrap();
    let mut reader = decryptor.async_reader(rx);
    let mut out = Vec::new();
    loop {
        let available = reader.fill_buf().await.unwrap();
        if available.is_empty() {
            break;
        }
        let n = available.len();
        out.extend_from_slice(available);
        reader.consume(n);
    }
    feeder.await.unwrap();
    assert_eq!(out, plaintext);
}

#[tokio::test]
async fn async_range_reader_reads_across_parts() {
    let c = 1usize << LOG2;
    let object = multipart(
        &[(2, data(3 * c, 1)), (5, data(c + 9, 2)), (6, data(40, 3))],
        chunk(LOG2),
    );
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    for (start, end) in [
        (0, 1),
        (3 * c - 1, 3 * c + 1),
        (c + 3, 4 * c + 30),
        (0, 4 * c + 49),
    ] {
        let plan = object.layout.plan_range(start as u64..end as u64).unwrap();
        let fetched = fetch(&object.stored, &plan);
        let mut out = Vec::new();
        let mut reader = decryptor.async_range_reader(&plan, &fetched[..]).unwrap();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, object.plaintext[start..end], "{start}..{end}");
    }
}

#[tokio::test]
async fn async_readers_and_writers_refuse_truncation_and_trailing_data() {
    let object = single(&plaintext(), chunk(LOG2));
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    let cut = &object.stored[..object.stored.len() - 1];
    let error = decryptor
        .async_reader(cut)
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(stream_error(error), StreamError::Truncated);

    let mut writer = decryptor.async_writer(Vec::new());
    writer.write_all(cut).await.unwrap();
    assert_eq!(
        stream_error(writer.shutdown().await.unwrap_err()),
        StreamError::Truncated
    );

    let long = [&object.stored[..], b"x"].concat();
    let error = decryptor
        .async_reader(&long[..])
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(stream_error(error), StreamError::TrailingData);
}

#[tokio::test]
async fn a_finished_writer_takes_no_more() {
    let encryptor = Encryptor::new(&key(), BINDING, PartNumber::SINGLE, chunk(LOG2)).unwrap();
    let mut writer = encryptor.async_writer(Vec::new());
    writer.write_all(b"abc").await.unwrap();
    writer.shutdown().await.unwrap();
    let error = writer.write_all(b"d").await.unwrap_err();
    assert_eq!(stream_error(error), StreamError::Finished);
}

#[test]
fn debug_output_never_shows_buffered_plaintext() {
    let marker = b"MARKER-plaintext-MARKER";
    let encryptor = Encryptor::new(&key(), BINDING, PartNumber::SINGLE, chunk(LOG2)).unwrap();
    let mut writer = encryptor.writer(std::io::sink());
    writer.write_all(marker).unwrap();
    let object = single(marker, chunk(LOG2));
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    let mut reader = decryptor.reader(std::io::empty());
    let mut plaintext_in_reader = decryptor.reader(&object.stored[..]);
    let mut byte = [0u8; 1];
    std::io::Read::read(&mut plaintext_in_reader, &mut byte).unwrap();
    let _ = std::io::Read::read(&mut reader, &mut byte);
    let printed = format!("{writer:?} {plaintext_in_reader:?} {decryptor:?}");
    // The marker's first bytes, as text and as Debug prints a byte slice.
    assert!(!printed.contains("MARKER"), "{printed}");
    assert!(!printed.contains("77, 65, 82, 75"), "{printed}");
    assert!(printed.contains("[secret elided]"), "{printed}");
}

#[test]
fn readers_of_small_objects_allocate_small_buffers() {
    // A 100-byte object under the default 1 MiB chunks needs 116 bytes.
    let small = single(&data(100, 1), ChunkSize::DEFAULT);
    let decryptor = Decryptor::new(&key(), BINDING, &small.layout).unwrap();
    assert_eq!(decryptor.full_opener().max_unit(), 116);
    // Two full chunks and a short one: a whole chunk, except for a range
    // inside the short last chunk.
    let c = 1 << LOG2;
    let large = single(&data(2 * c + 10, 1), chunk(LOG2));
    let decryptor = Decryptor::new(&key(), BINDING, &large.layout).unwrap();
    assert_eq!(decryptor.full_opener().max_unit(), c + 16);
    let tail = large
        .layout
        .plan_range(2 * c as u64 + 1..2 * c as u64 + 5)
        .unwrap();
    assert_eq!(decryptor.opener(&tail).unwrap().max_unit(), HEADER_LEN);
    assert_eq!(
        read_range(&large, 2 * c as u64 + 1..2 * c as u64 + 5).unwrap(),
        large.plaintext[2 * c + 1..2 * c + 5]
    );
}
