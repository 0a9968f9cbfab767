//! JSON decode throughput of Binance payloads into domain types: a 1000-row klines answer into candles and a
//! 1000-level depth answer into an order book, string prices straight to `Decimal`. Criterion prints MB/s and
//! rows (or levels) per second.
//!
//! Run: `cargo bench --bench exchange_decode`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcbot::exchange::binance::payloads::{Depth, Kline};
use mcbot_stages::domain::{Candle, OrderBook};

/// A klines answer shaped like Binance's: 12 fields a row, prices as 8-decimal strings.
fn klines_json(rows: usize) -> String {
    let mut out = String::from("[");
    let mut price: i64 = 4_000_000_000_000; // 40000.00000000
    for i in 0..rows {
        let open_time = 1_704_067_200_000i64 + i as i64 * 60_000;
        let close = price + ((i as i64 * 7_919) % 2_001 - 1_000) * 1_000_000;
        let (hi, lo) = (price.max(close) + 500_000_000, price.min(close) - 500_000_000);
        let f = |v: i64| format!("\"{}.{:08}\"", v / 100_000_000, v % 100_000_000);
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "[{open_time},{},{},{},{},\"{}.{:08}\",{},\"{}.12345678\",{},\"1.00000000\",\"40000.00000000\",\"0\"]",
            f(price),
            f(hi),
            f(lo),
            f(close),
            12 + i % 50,
            (i * 37) % 100_000_000,
            open_time + 59_999,
            500_000 + i,
            1_000 + i % 300,
        ));
        price = close;
    }
    out.push(']');
    out
}

/// A depth answer with `levels` levels a side.
fn depth_json(levels: usize) -> String {
    let side = |sign: i64| {
        (1..=levels)
            .map(|i| {
                let p = 4_000_000_000_000i64 + sign * i as i64 * 1_000_000;
                format!(
                    "[\"{}.{:08}\",\"{}.{:08}\"]",
                    p / 100_000_000,
                    p % 100_000_000,
                    i % 7,
                    (i * 7_907) % 100_000_000
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("{{\"lastUpdateId\":1027024,\"bids\":[{}],\"asks\":[{}]}}", side(-1), side(1))
}

fn decode_klines(body: &[u8]) -> Vec<Candle> {
    let rows: Vec<Kline> = serde_json::from_slice(body).expect("valid klines");
    rows.iter().filter_map(Kline::to_candle).collect()
}

fn decode_depth(body: &[u8]) -> OrderBook {
    let depth: Depth = serde_json::from_slice(body).expect("valid depth");
    depth.to_book()
}

fn bench(c: &mut Criterion) {
    let klines = klines_json(1_000);
    assert_eq!(decode_klines(klines.as_bytes()).len(), 1_000);
    let mut g = c.benchmark_group("klines_1000_rows");
    g.throughput(Throughput::Bytes(klines.len() as u64));
    g.bench_function("bytes", |b| b.iter(|| decode_klines(black_box(klines.as_bytes()))));
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("rows", |b| b.iter(|| decode_klines(black_box(klines.as_bytes()))));
    g.finish();

    let depth = depth_json(1_000);
    assert_eq!(decode_depth(depth.as_bytes()).asks.len(), 1_000);
    let mut g = c.benchmark_group("depth_1000_levels_a_side");
    g.throughput(Throughput::Bytes(depth.len() as u64));
    g.bench_function("bytes", |b| b.iter(|| decode_depth(black_box(depth.as_bytes()))));
    g.throughput(Throughput::Elements(2_000));
    g.bench_function("levels", |b| b.iter(|| decode_depth(black_box(depth.as_bytes()))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
