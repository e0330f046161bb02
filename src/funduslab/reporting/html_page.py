"""The shell of ``report.html``: one page with its own CSS, no scripts, nothing fetched.

:func:`funduslab.reporting.html.write_html_report` fills ``$title``, ``$meta``, ``$nav``,
``$body`` and ``$n_boot``.
"""

from __future__ import annotations

from string import Template

__all__ = ["PAGE"]

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1180px;padding:1.2rem;color:#1d2330;line-height:1.45}
h2{border-bottom:2px solid #d5dbe5;margin-top:2.2rem}h3{margin-top:1.8rem}h4{color:#34405a}
.meta,.note,figcaption{color:#5b6478;font-size:.92rem}
.note{background:#fff7e0;border-left:4px solid #e0b020;padding:.4rem .7rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.82rem;margin:.4rem 0}
th,td{border:1px solid #d5dbe5;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#eef2f8;white-space:normal;vertical-align:bottom}th:first-child{text-align:left}
td.t{text-align:left;white-space:normal}
figure{margin:.6rem 0 1.2rem}img{max-width:100%;height:auto;border:1px solid #e3e7ee}
nav a{margin-right:1rem}section.recipe{border-top:1px dashed #c8cfdb;margin-top:2rem}
</style></head><body>
<h1>$title</h1>
<p class="meta">$meta</p>
<nav>$nav</nav>
$body
<p class="meta">Written by <code>funduslab report --html</code>. Intervals: percentile
bootstrap over the test images ($n_boot resamples; Efron &amp; Tibshirani 1993). ECE: equal-width
bins (Guo et al. 2017). With test splits of a few hundred images, read differences smaller than
the seed spread or the interval as noise.</p>
</body></html>
""")
