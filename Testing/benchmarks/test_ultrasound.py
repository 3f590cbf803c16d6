from benchmarks.ultrasound import RealRow, UsRow, verdicts


def rows(case, product_ssim, product_gcnr=0.9, seconds=100.0, blur_ssim=0.85):
    made = [("noisy input", 20.0, 0.30, 0.60), ("Gaussian blur", 25.0, blur_ssim, 0.90),
            ("non-local means (scikit-image)", 27.0, 0.75, 0.88),
            ("Neighbor2Neighbor", 21.0, 0.32, 0.60),
            ("Speckle2Self `balanced`", 27.5, product_ssim, product_gcnr),
            ("  its network alone (no guided average, no guard)", 22.0, 0.99, 0.99)]
    return [UsRow(case, m, p, s, 1.0, g, seconds if m.startswith("Speckle") else 1.0)
            for m, p, s, g in made]


def test_the_blur_counts_and_ablation_rows_do_not():
    text = verdicts(rows("a", 0.91) + rows("b", 0.89), [])
    first, second = text.splitlines()
    assert first.startswith("- a: highest SSIM") and "0.05 over the best classical filter: " \
        "**yes**" in first and "Gaussian blur 0.850, +0.060" in first
    assert "non-local means (scikit-image), +0.160" in first
    assert "**no** (0.890 vs Gaussian blur 0.850, +0.040" in second  # margin too small


def test_gcnr_time_and_real_files_are_judged():
    text = verdicts(rows("a", 0.95, product_gcnr=0.5, seconds=301.0),
                    [RealRow("x.dcm", "1 x 4x4", 10.0, 20.0, 0.9, 0.9, 1.0),
                     RealRow("y.dcm", "1 x 4x4", 10.0, 20.0, 0.9, 0.8, 1.0)])
    lines = text.splitlines()
    assert "gCNR not lowered: **no** (0.600 -> 0.500)" in lines[0]
    assert "<= 5 min: **no** (301 s)" in lines[0]
    assert lines[1].startswith("- x.dcm: ENL up and gCNR not down: **yes**")
    assert lines[2].startswith("- y.dcm: ENL up and gCNR not down: **no**")


def test_little_speckle_must_not_get_worse():
    good = rows("us-compounded", 0.95)
    assert "not worse than the input: **yes**" in verdicts(good, [])
    worse = [r if not r.method.startswith("Speckle") else UsRow(
        r.case, r.method, 19.0, r.ssim, r.cnr, r.gcnr, r.seconds) for r in good]
    assert "not worse than the input: **no**" in verdicts(worse, [])
