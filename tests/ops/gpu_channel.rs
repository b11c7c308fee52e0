//! GPU channel concat/split/shuffle against the CPU reference. These only move values, so the
//! results must be bit-identical, whether a thread moves 4 values per access (runs of whole
//! groups of 4: HW a multiple of 4, or channel counts channels last) or one.

use ferronet_test_support::gpu::{gpu, random_f32, upload_pair, widen};
use ferronet_test_support::stored::StoredPrecision;

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::ChannelOps;
use ferronet::precision::Precision;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

fn exact(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(widen(got), want, "{what}");
}

/// One value per thread (HW 35, 7; channels last with odd channel counts) and 4 (HW 36; channels
/// last with counts that are multiples of 4).
#[test]
fn concat_and_split_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let shapes = [(1, 35, vec![3usize]), (5, 35, vec![3, 1, 4]), (2, 1, vec![2, 5]), (3, 7, vec![1, 1])]
        .into_iter()
        .chain([(2, 36, vec![3, 1, 4]), (3, 1, vec![4, 8, 4])]);
    for (seed, (n, hw, channels)) in shapes.enumerate() {
        let what = format!("N={n} HW={hw} channels={channels:?}");
        let parts: Vec<Vec<f32>> = channels
            .iter()
            .enumerate()
            .map(|(i, &c)| random_f32(n * c * hw, (seed * 10 + i) as u64, -2.0, 2.0))
            .collect();
        let gparts: Vec<_> = parts.iter().map(|p| gpu.upload(p).unwrap()).collect();
        let cparts: Vec<_> = parts.iter().map(|p| cpu.upload(&widen(p)).unwrap()).collect();

        let joined = gpu.concat_channels(&gparts.iter().collect::<Vec<_>>(), &channels, n, hw).unwrap();
        let want = cpu.concat_channels(&cparts.iter().collect::<Vec<_>>(), &channels, n, hw).unwrap();
        exact(&format!("concat {what}"), &gpu.download(&joined).unwrap(), &want);

        let split = gpu.split_channels(&joined, &channels, n, hw).unwrap();
        assert_eq!(split.len(), channels.len());
        for (i, (got, part)) in split.iter().zip(&parts).enumerate() {
            assert_eq!(&gpu.download(got).unwrap(), part, "split part {i} of {what}");
        }
    }
}

#[test]
fn shuffle_and_its_inverse_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    // The last two take 4 values of a plane per thread.
    for (seed, (n, c, hw, groups)) in
        [(1, 6, 35, 2), (5, 6, 7, 3), (2, 12, 1, 4), (3, 5, 3, 1), (1, 8, 5, 8), (2, 6, 16, 3), (1, 8, 4, 2)].into_iter().enumerate()
    {
        let what = format!("N={n} C={c} HW={hw} groups={groups}");
        let x = random_f32(n * c * hw, seed as u64, -2.0, 2.0);
        let (gx, cx) = upload_pair(&gpu, &cpu, &x);
        let y = gpu.channel_shuffle(&gx, n, c, hw, groups).unwrap();
        exact(
            &format!("shuffle {what}"),
            &gpu.download(&y).unwrap(),
            &cpu.channel_shuffle(&cx, n, c, hw, groups).unwrap(),
        );
        let back = gpu.channel_shuffle_backward(&gx, n, c, hw, groups).unwrap();
        let want = cpu.channel_shuffle_backward(&cx, n, c, hw, groups).unwrap();
        exact(&format!("shuffle backward {what}"), &gpu.download(&back).unwrap(), &want);
        let round_trip = gpu.channel_shuffle_backward(&y, n, c, hw, groups).unwrap();
        assert_eq!(gpu.download(&round_trip).unwrap(), x, "shuffle then its inverse, {what}");
    }
}

#[test]
fn bad_geometry_is_the_same_error_as_on_the_cpu() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let (gx, cx) = upload_pair(&gpu, &cpu, &[0.0f32; 12]);
    let same = |what: &str, g: ferronet::Result<()>, c: ferronet::Result<()>| {
        let (g, c) = (g.expect_err(what).to_string(), c.expect_err(what).to_string());
        assert_eq!(g, c, "{what}");
    };
    same(
        "groups must divide the channels",
        gpu.channel_shuffle(&gx, 1, 6, 2, 4).map(drop),
        cpu.channel_shuffle(&cx, 1, 6, 2, 4).map(drop),
    );
    same(
        "the parts must cover x",
        gpu.split_channels(&gx, &[2, 3], 1, 2).map(drop),
        cpu.split_channels(&cx, &[2, 3], 1, 2).map(drop),
    );
    same(
        "an input must match its channel count",
        gpu.concat_channels(&[&gx], &[5], 1, 2).map(drop),
        cpu.concat_channels(&[&cx], &[5], 1, 2).map(drop),
    );
    same(
        "one channel count per input",
        gpu.concat_channels(&[&gx], &[], 1, 2).map(drop),
        cpu.concat_channels(&[&cx], &[], 1, 2).map(drop),
    );
}

#[test]
fn concat_of_no_parts_is_empty() {
    let gpu = gpu();
    assert_eq!(gpu.download(&gpu.concat_channels(&[], &[], 3, 5).unwrap()).unwrap(), Vec::<f32>::new());
    assert!(gpu.split_channels(&gpu.upload(&[]).unwrap(), &[], 3, 5).unwrap().is_empty());
}

/// 16-bit stored tensors (bf16, fp16) move without rounding: concat (in the first part's format,
/// here with an f32 second part), split and the shuffle both ways keep the stored values bit
/// for bit and their format, one value per thread (HW 5) and 4 (HW 8).
#[test]
fn sixteen_bit_tensors_move_unchanged_in_their_format() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let (n, channels) = (2, [3usize, 2]);
    for (p, hw) in [Precision::Bf16, Precision::Fp16].into_iter().flat_map(|p| [(p, 5), (p, 8)]) {
        let parts = [random_f32(n * 3 * hw, 1, -2.0, 2.0), random_f32(n * 2 * hw, 2, -2.0, 2.0)];
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let rounded = parts.each_ref().map(|v| stored.rounded(v));
        let first = stored.on_gpu(&parts[0]);
        let second = gpu.upload(&rounded[1]).unwrap();
        let joined = gpu.concat_channels(&[&first, &second], &channels, n, hw).unwrap();
        let want = cpu.concat_channels(&[&stored.on_cpu(&parts[0]), &stored.on_cpu(&parts[1])], &channels, n, hw).unwrap();
        assert_eq!(stored.download("concat", &joined), want.to_vec(), "{p} concat");
        for (i, part) in gpu.split_channels(&joined, &channels, n, hw).unwrap().iter().enumerate() {
            let what = format!("split part {i}");
            assert_eq!(stored.download(&what, part), rounded[i], "{p} {what}");
        }
        let (c, groups) = (5, 5);
        let y = gpu.channel_shuffle(&joined, n, c, hw, groups).unwrap();
        assert_eq!(stored.download("shuffle", &y), cpu.channel_shuffle(&want, n, c, hw, groups).unwrap().to_vec(), "{p} shuffle");
        let back = gpu.channel_shuffle_backward(&y, n, c, hw, groups).unwrap();
        assert_eq!(stored.download("shuffle backward", &back), want.to_vec(), "{p} shuffle backward");
    }
}

/// On the simulator, copies and shuffles of whole groups of 4 move them in one access per lane
/// each way (16 bytes at f32, 8 at 16 bits): a warp access moves 32 x 4 values. [2, 12, 64]
/// split into 4 and 8 channels copies 512 and 1024 values per part.
#[test]
fn whole_groups_move_four_values_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let (n, hw, channels, groups) = (2, 64, [4usize, 8], 3);
    let c = channels.iter().sum();
    let x = random_f32(n * c * hw, 3, -2.0, 2.0);
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let joined = stored.on_gpu(&x);
        driver.take_launch_stats();
        let parts = gpu.split_channels(&joined, &channels, n, hw).unwrap();
        let rejoined = gpu.concat_channels(&parts.iter().collect::<Vec<_>>(), &channels, n, hw).unwrap();
        let shuffled = gpu.channel_shuffle(&joined, n, c, hw, groups).unwrap();
        let stats = driver.take_launch_stats();
        let accesses = |kernel: &str| -> Vec<u64> {
            stats.iter().filter(|s| s.kernel == kernel).map(|s| s.global_accesses).collect()
        };
        // A load and a store per warp of 32 x 4 values.
        let warp_accesses = |values: usize| 2 * (values / (32 * 4)) as u64;
        let per_copy: Vec<u64> = channels.iter().map(|&count| warp_accesses(n * count * hw)).collect();
        assert_eq!(accesses("channel::copy_channels"), [per_copy.clone(), per_copy].concat(), "{p}: split, then concat");
        assert_eq!(accesses("channel::channel_shuffle"), [warp_accesses(n * c * hw)], "{p}: shuffle");
        let rounded = stored.rounded(&x);
        assert_eq!(stored.download("concat", &rejoined), rounded, "{p}: split then concat");
        let want = cpu.channel_shuffle(&cpu.upload(&rounded).unwrap(), n, c, hw, groups).unwrap();
        assert_eq!(stored.download("shuffle", &shuffled), want.to_vec(), "{p}");
    }
}
