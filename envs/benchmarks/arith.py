"""``python -m envs.benchmarks.arith``: rewrite the shipped arithmetic benchmark."""

from envs.benchmarks import ARITH, write_arith

if __name__ == "__main__":
    print(f"{write_arith()} problems written to {ARITH}")
