"""The gwkcuda command line: ``gwkcuda SUBCOMMAND`` or ``python -m gwkcuda SUBCOMMAND``."""
import argparse
import sys

import torch


def _self_check(device: str) -> str:
    """Packs and unpacks random codes at every nbits on ``device`` and compares with the reference."""
    from . import ops, reference

    gen = torch.Generator().manual_seed(0)
    for nbits in range(1, 17):
        codes = torch.randint(0, 2**nbits, (4097,), generator=gen, dtype=torch.int32)
        packed = ops.pack_bits(codes.to(device), nbits)
        if not torch.equal(packed.cpu(), reference.pack_bits(codes, nbits)):
            return f"FAILED: pack_bits differs from the reference at nbits={nbits}"
        if not torch.equal(ops.unpack_bits(packed, nbits, codes.numel()).cpu(), codes):
            return f"FAILED: unpack_bits does not invert pack_bits at nbits={nbits}"
    return "ok (nbits 1..16, 4097 codes, bit-exact against the reference)"


def cmd_info(args) -> int:
    import gwkcuda

    info = gwkcuda.build_info()
    print(f"gwkcuda {gwkcuda.__version__}")
    print(f"  torch at run time     {torch.__version__}")
    print(f"  torch built against   {info['torch_version']}")
    print(f"  CUDA kernels compiled {'yes, archs ' + info['cuda_archs'] if info['cuda_compiled'] else 'no'}")
    gpu = torch.cuda.is_available()
    print(f"  GPU seen              {torch.cuda.get_device_name(0) if gpu else 'none'}")
    ok = True
    for device in ["cpu"] + (["cuda"] if gpu and info["cuda_compiled"] else []):
        result = _self_check(device)
        ok &= result.startswith("ok")
        print(f"  pack/unpack self-check on {device}: {result}")
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gwkcuda", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="build info and a pack/unpack self-check").set_defaults(func=cmd_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
