"""Drop a batch by hand into the demo's bucket: part files, then the ``_SUCCESS`` marker.

    python -m demo.drop_batch --endpoint-url http://127.0.0.1:4566 s3://sparkflows-landing/landing/events/b2/
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.drop_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="s3://bucket/folder/")
    parser.add_argument("--endpoint-url", required=True, help="the demo's moto URL (printed in its summary)")
    parser.add_argument("--parts", type=int, default=3, help="number of part files (default 3)")
    parser.add_argument("--marker", default="_SUCCESS", help="the marker's file name")
    args = parser.parse_args(argv)
    url = urlsplit(args.folder)
    if url.scheme != "s3" or not url.netloc:
        parser.error(f"folder must look like s3://bucket/folder/, got {args.folder!r}")
    import boto3

    s3 = boto3.client("s3", endpoint_url=args.endpoint_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    folder = url.path.lstrip("/")
    folder = folder if folder.endswith("/") or not folder else folder + "/"
    for index in range(args.parts):
        s3.put_object(Bucket=url.netloc, Key=f"{folder}part-{index:05d}.csv", Body=f"id\n{index}\n".encode())
    s3.put_object(Bucket=url.netloc, Key=f"{folder}{args.marker}", Body=b"")
    print(f"wrote {args.parts} part files and s3://{url.netloc}/{folder}{args.marker}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
