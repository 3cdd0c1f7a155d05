"""Run Qlib 0.9.7's own processors on a pickled frame; executed by Qlib's venv, never by pytest.

Usage: ``python qlib_processor_oracle.py IN.pkl OUT.pkl CASES.json``. Each case is
``{"name", "class", "kwargs"}``; OUT.pkl maps each name to the processed frame.
"""


def main() -> None:
    import json
    import pickle
    import sys
    import warnings

    warnings.simplefilter("ignore")
    from qlib.data.dataset import processor as P

    with open(sys.argv[1], "rb") as fh:
        frame = pickle.load(fh)
    with open(sys.argv[3]) as fh:
        cases = json.load(fh)
    out = {}
    for case in cases:
        proc = getattr(P, case["class"])(**case["kwargs"])
        df = frame.copy()
        proc.fit(df)
        out[case["name"]] = proc(df)
    with open(sys.argv[2], "wb") as fh:
        pickle.dump(out, fh)


if __name__ == "__main__":
    main()
