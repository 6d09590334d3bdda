"""`moon mine-pairs`: search-query → purchased-item positives from behaviour logs."""

from datetime import datetime

import click

from moon_cli.options import Number, echo_summary, output_option, overwrite_option, quiet_option


@click.command("mine-pairs")
@click.argument("behavior", nargs=-1, required=True)
@output_option("Pairs Parquet file, or - for an Arrow stream on stdout.")
@click.option("--catalog", default=None, help="Catalogue Parquet: pairs whose item is not in it are dropped (counted).")
@click.option("--events", default="purchase", show_default=True,
              help="Events that make a positive, comma-separated: purchase[,cart,click] (carts / clicks are weaker).")
@click.option("--test-from", type=click.DateTime(), default=None,
              help="Pairs first seen on or after this date form the test split.")
@click.option("--test-fraction", type=Number(0, 1, max_open=True), default=0.1, show_default=True,
              help="Latest fraction of pairs (by first time seen) forming the test split (ignored with --test-from).")
@click.option("--max-per-user", type=click.IntRange(min=0), default=100, show_default=True,
              help="Cap on distinct pairs one user contributes (0 = no cap).")
@click.option("--max-per-query", type=click.IntRange(min=0), default=50, show_default=True,
              help="Cap on items one query contributes, most frequent first (0 = no cap).")
@overwrite_option
@quiet_option
def mine_pairs(behavior, output, catalog, events, test_from: datetime, test_fraction, max_per_user, max_per_query,
               overwrite, quiet):
    """Mine positive pairs from BEHAVIOR Parquet files, folders of them, or - (stdin).

    A positive is a search query (text, image, or both) followed in the same session by a purchase
    (carts and clicks with --events). Purchases with no query (feeds) are not search positives. One
    row per distinct (query, item), with the number of sessions behind it, the time it was first
    seen, a train / test split by time, and the strongest event behind it.

    \b
    Example (each runs in tests/test_docs.py):
      moon mine-pairs world/behavior.parquet --catalog world/catalog.parquet -o pairs.parquet
    """
    from moon_cli.contracts import CATALOG, PAIRS
    from moon_cli.data.pairs import KNOWN_EVENTS, behavior_files, mine_pairs as mine
    from moon_cli.errors import MoonError
    from moon_cli.io import ensure_new_output, make_manifest, read_table, write_table

    ensure_new_output(output, overwrite)
    files = behavior_files(list(behavior))
    catalog_ids = None
    if catalog:
        catalog_ids = read_table(catalog, CATALOG).table.column("item_id")
    event_list = tuple(e.strip() for e in events.split(",") if e.strip())
    table, stats = mine(files, event_list, catalog_ids, test_from, None if test_from else test_fraction,
                        max_per_user, max_per_query)
    if stats.events == 0:
        click.echo("warning: the behaviour log is empty; writing an empty pairs table", err=True)
    if stats.unknown_events:
        shown = ", ".join(f"{k!r} {v}" for k, v in list(stats.unknown_events.items())[:5])
        message = (f"{sum(stats.unknown_events.values())} event(s) have values moon does not know ({shown}); "
                   f"event values are {', '.join(KNOWN_EVENTS)} (lower case) — map them before mining")
        if stats.pairs == 0:
            raise MoonError(f"{', '.join(map(str, files))}: no pairs: {message}")
        click.echo(f"warning: {message}", err=True)
    manifest = make_manifest("mine-pairs",
                             {"events": list(event_list), "test_from": str(test_from) if test_from else None,
                                            "test_fraction": test_fraction, "max_per_user": max_per_user,
                                            "max_per_query": max_per_query},
                             inputs=[*(str(f) for f in files), *([catalog] if catalog else [])])
    write_table(table, output, contract=PAIRS, manifest=manifest, overwrite=overwrite)
    rate = stats.events / stats.seconds if stats.seconds else 0
    echo_summary(f"moon mine-pairs: wrote {output}", {
        "events in": f"{stats.events} from {stats.files} file(s)",
        "positive events": f"{stats.search_events} after a search, {stats.feed_events} without a query (not positives)",
        "distinct pairs": stats.pairs_before_filters,
        "dropped": f"{stats.dropped_not_in_catalog} not in catalogue, {stats.capped_per_user} over the per-user cap, "
                   f"{stats.capped_per_query} over the per-query cap",
        "pairs out": f"{stats.pairs} ({', '.join(f'{k} {v}' for k, v in stats.by_modality.items())}; "
                     f"{', '.join(f'{k} {v}' for k, v in stats.by_split.items())})",
        "time": f"{stats.seconds:.2f} s ({rate:,.0f} events/s)",
    })
