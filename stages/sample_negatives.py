"""`moon sample-negatives`: K hard negatives per positive pair."""

import click

from moon_cli.options import Number, echo_summary, output_option, overwrite_option, quiet_option, seed_option


@click.command("sample-negatives")
@click.argument("pairs")
@click.option("--catalog", required=True, help="Catalogue Parquet the negatives are drawn from.")
@output_option("Negatives Parquet file, or - for an Arrow stream on stdout.")
@click.option("--per-pair", type=click.IntRange(min=1), default=8, show_default=True, help="Negatives per pair (K).")
@click.option("--strategy", type=click.Choice(["same-category", "embedding", "random", "mixed"]),
              default="same-category", show_default=True, help="How negatives are chosen.")
@click.option("--embeddings", default=None,
              help="Embeddings of the catalogue (from `moon embed`) for embedding / mixed.")
@click.option("--margin", type=Number(), default=0.05, show_default=True,
              help="Drop embedding candidates scoring within this of the positive (likely false negatives).")
@click.option("--query-aware/--no-query-aware", default=True, show_default=True,
              help="Never draw a same-leaf product that matches every attribute the query states (its text's "
                   "attribute words; a photo's colour and pattern): it answers the query as well as the positive.")
@seed_option("Same seed, same negatives")
@overwrite_option
@quiet_option
def sample_negatives(pairs, catalog, output, per_pair, strategy, embeddings, margin, query_aware, seed, overwrite,
                     quiet):
    """Sample hard negatives for each pair in PAIRS (a pairs Parquet from `moon mine-pairs`, or -).

    same-category: other products of the positive's leaf category (topped up from the parent
    category when a leaf is small); embedding: nearest products by a previous model, minus those
    within --margin of the positive; random; mixed: half same-category, half embedding. Never a
    positive of the same query, and (--query-aware) never a same-leaf product that matches every
    attribute the query states.

    \b
    Example (each runs in tests/test_docs.py):
      moon sample-negatives pairs.parquet --catalog world/catalog.parquet -o negatives.parquet --per-pair 4
    """
    from moon_cli.contracts import CATALOG, EMBEDDINGS, NEGATIVES, PAIRS, check_schema
    from moon_cli.data.negatives import sample_negatives as sample, score_table
    from moon_cli.io import ensure_new_output, make_manifest, read_table, write_table

    ensure_new_output(output, overwrite)
    pairs_art = read_table(pairs, PAIRS)
    catalog_art = read_table(catalog, CATALOG)
    emb_table = None
    if embeddings:
        emb_art = read_table(embeddings)
        check_schema(emb_art.table.schema, EMBEDDINGS, emb_art.source)
        emb_table = emb_art.table
    table, stats = sample(pairs_art.table, catalog_art.table, per_pair, strategy, seed, emb_table, margin,
                          source=embeddings or "embeddings", query_aware=query_aware)
    manifest = make_manifest("sample-negatives", {"per_pair": per_pair, "strategy": strategy, "margin": margin,
                                                  "query_aware": query_aware},
                             seed=seed, inputs=[p for p in (pairs, catalog, embeddings) if p])
    write_table(table, output, contract=NEGATIVES, manifest=manifest, overwrite=overwrite)
    summary = {
        "pairs": f"{stats.pairs} ({stats.skipped_unknown_item} skipped: item not in catalogue)",
        "negatives": ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items())) or "none",
        "short": f"{stats.short} pair(s) got fewer than {per_pair}",
        "false negatives": (f"{stats.dropped_false_negatives} same-leaf candidates excluded "
                            f"({stats.dropped_false_negatives / max(1, stats.pairs):.1f} per pair): they match every "
                            f"attribute their query states" if query_aware else "not filtered (--no-query-aware)"),
        "time": f"{stats.seconds:.2f} s",
    }
    if stats.positive_scores:
        summary["dropped by margin"] = stats.dropped_by_margin
    if stats.embeddings_left_out:
        summary["embeddings left out"] = ", ".join(f"{n} {why}" for why, n in stats.embeddings_left_out.items())
    echo_summary(f"moon sample-negatives: wrote {output}", summary)
    table_text = score_table(stats)
    if table_text:
        click.echo("cosine scores (anchor = query vector when present, else the positive):\n" + table_text, err=True)
