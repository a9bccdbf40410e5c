#!/usr/bin/env python3
"""What each statement of an idle one-row share costs: round trips of growing multi-statement
queries against one server, run by bench/share_statements.sh (which starts the server).

Usage: share_statements.py PORT [ROUNDS]. Every round sends each variant once, in a shuffled
order, 2 ms apart, each inserting one new row in its own transaction; prints the p50 and mean
round trip per variant. The differences between variants are what a statement adds (server
work plus this client's handling of one more result); absolute figures include pymysql's own
overhead, which drc's client does not have. Needs pymysql (pip install pymysql).
"""

import random
import statistics
import sys
import time

import pymysql
from pymysql.constants import CLIENT

FENCE_GUARD = (
    "IF NOT ((SELECT `term` FROM m.fence WHERE `center` = 'b' LOCK IN SHARE MODE) <=> 0) "
    "THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 31998, MESSAGE_TEXT = 'fenced'; END IF"
)
CHECKPOINT = (
    "INSERT INTO m.checkpoint (`link`, `worker`, `batch`, `workers`, `start_position`, "
    "`end_position`, `term`) VALUES ('a->b', 0, {b}, 4, '1-1-{b}', '1-1-{b}', 0) "
    "ON DUPLICATE KEY UPDATE `batch` = VALUES(`batch`), `workers` = VALUES(`workers`), "
    "`start_position` = VALUES(`start_position`), `end_position` = VALUES(`end_position`), "
    "`term` = VALUES(`term`)"
)
APPLY_LOG = (
    "INSERT INTO m.apply_log (`link`, `worker`, `slot`, `batch`, `term`, `replica`, "
    "`committed_at`) VALUES ('a->b', 0, {slot}, {b}, 0, 0, NOW(6)) ON DUPLICATE KEY UPDATE "
    "`batch` = VALUES(`batch`), `term` = VALUES(`term`), `replica` = VALUES(`replica`), "
    "`committed_at` = VALUES(`committed_at`)"
)
TERM_UPDATE = "UPDATE m.checkpoint SET `term` = 0 WHERE `link` = 'a->b' AND `worker` = 0"
OLD_CHECKS = [
    "SET @drc_warnings = 0",
    "SET @drc_warnings = @drc_warnings + @@warning_count",
    "SET @drc_warnings = (SELECT 0 UNION ALL SELECT 1 FROM DUAL WHERE @drc_warnings > 0)",
]
NEW_CHECK = "SET @drc_warned = ~0 + (@@warning_count > 0)"

# name -> list of statements between START TRANSACTION and COMMIT ("ROW" is the insert).
VARIANTS = {
    "row": ["ROW"],
    "row + DO 0": ["ROW", "DO 0"],
    "fence guard + row": [FENCE_GUARD, "ROW"],
    "row + reset, count, UNION check (drc before 375daeb)": [OLD_CHECKS[0], "ROW"] + OLD_CHECKS[1:],
    "row + one overflow check (drc now)": ["ROW", NEW_CHECK],
    "row + checkpoint": ["ROW", CHECKPOINT],
    "row + apply_log": ["ROW", APPLY_LOG],
    "row + checkpoint + term UPDATE (drc before 54e776a)": ["ROW", CHECKPOINT, TERM_UPDATE],
    "idle share, drc before 54e776a": [FENCE_GUARD, OLD_CHECKS[0], "ROW"] + OLD_CHECKS[1:]
    + [CHECKPOINT, TERM_UPDATE, APPLY_LOG],
    "idle share, drc now": [FENCE_GUARD, "ROW", NEW_CHECK, CHECKPOINT, APPLY_LOG],
}


def main() -> None:
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                           autocommit=True, client_flag=CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()

    def run(q: str) -> None:
        cur.execute(q)
        while cur.nextset():
            pass

    run("CREATE DATABASE m; CREATE DATABASE d")
    run("CREATE TABLE m.fence (center VARCHAR(64) PRIMARY KEY, term BIGINT UNSIGNED NOT NULL, "
        "replica INT UNSIGNED NOT NULL, taken_at TIMESTAMP(6) NOT NULL)")
    run("INSERT INTO m.fence VALUES ('b', 0, 0, NOW(6))")
    run("CREATE TABLE m.checkpoint (`link` VARCHAR(130) NOT NULL, `worker` INT UNSIGNED NOT NULL, "
        "`batch` BIGINT UNSIGNED NOT NULL, `workers` INT UNSIGNED NOT NULL, "
        "`start_position` MEDIUMTEXT NOT NULL, `end_position` MEDIUMTEXT NOT NULL, "
        "`term` BIGINT UNSIGNED NOT NULL DEFAULT 0, `updated_at` TIMESTAMP(6) NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), PRIMARY KEY (`link`, `worker`))")
    run("CREATE TABLE m.apply_log (`link` VARCHAR(130) NOT NULL, `worker` INT UNSIGNED NOT NULL, "
        "`slot` BIGINT UNSIGNED NOT NULL, `batch` BIGINT UNSIGNED NOT NULL, "
        "`term` BIGINT UNSIGNED NOT NULL, `replica` INT UNSIGNED NOT NULL, "
        "`committed_at` TIMESTAMP(6) NOT NULL, PRIMARY KEY (`link`, `worker`, `slot`))")
    run("CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(64))")

    times = {name: [] for name in VARIANTS}
    batch = 0
    for _ in range(rounds):
        names = list(VARIANTS)
        random.shuffle(names)
        for name in names:
            batch += 1
            parts = ["START TRANSACTION"]
            for s in VARIANTS[name]:
                if s == "ROW":
                    parts.append(f"INSERT INTO d.t VALUES ({batch}, 'probe {batch}')")
                else:
                    parts.append(s.format(b=batch, slot=batch % 1024))
            parts.append("COMMIT")
            q = ";\n".join(parts)
            t = time.perf_counter()
            run(q)
            times[name].append(time.perf_counter() - t)
            time.sleep(0.002)
    rows = cur.execute("SELECT COUNT(*) FROM d.t")
    assert rows == 1 and cur.fetchone()[0] == batch, "every variant must have inserted its row"
    print(f"{'START TRANSACTION + ... + COMMIT':<58} {'p50 us':>8} {'mean us':>8}")
    for name, xs in times.items():
        xs.sort()
        print(f"{name:<58} {xs[len(xs) // 2] * 1e6:>8.0f} {statistics.mean(xs) * 1e6:>8.0f}")


if __name__ == "__main__":
    main()
