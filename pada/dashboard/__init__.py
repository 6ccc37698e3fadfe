"""What the dashboard shows (`frames`) and the run processes it controls (`processes`); no Streamlit here."""
