"""PaDA Studio dashboard: `streamlit run app.py` (runs from $PADA_RUNS_DIR, else ./runs).

This file only routes: page config, the navigation over `pages/`, the shared
sidebar (`pages/common.py`: run picker, reviewer name), and one place that
turns a page's exception into a readable message instead of a traceback.
"""

import streamlit as st

st.set_page_config(page_title="PaDA Studio", page_icon=":material/insights:", layout="wide")

from pages import common  # noqa: E402  (after set_page_config)

ICONS = {
    "pages/runs.py": ":material/play_circle:",
    "pages/errors.py": ":material/error:",
    "pages/clusters.py": ":material/scatter_plot:",
    "pages/strategies.py": ":material/edit_note:",
    "pages/samples.py": ":material/fact_check:",
    "pages/evolution.py": ":material/stacked_bar_chart:",
    "pages/compare.py": ":material/compare_arrows:",
    "pages/cost.py": ":material/payments:",
}


def main() -> None:
    pages = [st.Page(path, title=title, icon=ICONS[path], default=path == "pages/runs.py")
             for path, title in common.PAGES.items()]
    page = st.navigation(pages)
    common.sidebar()
    try:
        with common.framed():
            page.run()
    except Exception as err:
        common.show_exception(err)


main()
