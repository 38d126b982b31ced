"""A small Gradio app, as a private Space would run it: a prediction, a
streaming generator and a file round trip. Usage: python gradio_app.py PORT"""

import sys
import time

import gradio as gr


def greet(name):
    return "Hello, %s!" % name


def count(n):
    """Yields partial results one by one, like a token stream."""
    text = ""
    for i in range(int(n)):
        time.sleep(0.4)
        text += "%d " % i
        yield text.strip()


def echo_file(path):
    return path


with gr.Blocks(title="WigHaven test app") as demo:
    name = gr.Textbox(label="Name", elem_id="name")
    greeting = gr.Textbox(label="Greeting", elem_id="greeting")
    gr.Button("Greet", elem_id="greet").click(greet, name, greeting, api_name="greet")
    n = gr.Number(label="Count to", value=5)
    counted = gr.Textbox(label="Counted")
    gr.Button("Count").click(count, n, counted, api_name="count")
    upload = gr.File(label="File")
    download = gr.File(label="Same file")
    gr.Button("Echo file").click(echo_file, upload, download, api_name="echo_file")

if __name__ == "__main__":
    demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), show_error=True)
