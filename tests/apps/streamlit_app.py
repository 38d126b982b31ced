"""A small Streamlit app: its UI talks to the server over a WebSocket at
/_stcore/stream. Run with `streamlit run streamlit_app.py`."""

import streamlit as st

st.title("WigHaven Streamlit test")
name = st.text_input("Your name", key="name")
if st.button("Say hello"):
    st.write("Hello from Streamlit, %s!" % name)
