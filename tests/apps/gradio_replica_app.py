"""One replica of a Gradio app that says which replica it is: every answer
carries REPLICA_NAME, so a test can tell which replica served each call.
Each replica keeps its uploads in its own GRADIO_TEMP_DIR, so a file
uploaded to one is unknown to the other. Usage: python gradio_replica_app.py PORT"""

import os
import sys
import tempfile
import time

import gradio as gr

REPLICA = os.environ.get("REPLICA_NAME", "unnamed")
# The token its front demands: the app checks that it came alone (the
# gateway sent this replica its own token and nobody else's).
FRONT_TOKEN = os.environ.get("FRONT_TOKEN")


def whoami(text, request: gr.Request):
    said = "%s says %s" % (REPLICA, text)
    if FRONT_TOKEN is not None:
        got = request.headers.getlist("authorization")
        if got != ["Bearer " + FRONT_TOKEN]:
            said += " (unexpected authorization: %d header(s))" % len(got)
    return said


def stream(n):
    """Yields several pieces one by one, like a token stream."""
    for i in range(int(n)):
        time.sleep(0.15)
        yield "%s piece %d" % (REPLICA, i)


def read_file(path):
    """The uploaded file's content and the replica, plus a file made here to download."""
    if path is None:
        return "%s got no file" % REPLICA, None
    with open(path, "rb") as f:
        content = f.read().decode("utf-8", "replace")
    out = os.path.join(tempfile.mkdtemp(dir=os.environ.get("GRADIO_TEMP_DIR")), "answer.txt")
    with open(out, "w") as f:
        f.write("%s read: %s" % (REPLICA, content))
    return "%s read: %s" % (REPLICA, content), out


with gr.Blocks(title="WigHaven replica app") as demo:
    text = gr.Textbox(label="Text", elem_id="text")
    said = gr.Textbox(label="Said", elem_id="said")
    gr.Button("Who am I", elem_id="whoami").click(whoami, text, said, api_name="whoami")
    n = gr.Number(label="Pieces", value=4, elem_id="n")
    pieces = gr.Textbox(label="Pieces streamed", elem_id="pieces")
    gr.Button("Stream", elem_id="stream").click(stream, n, pieces, api_name="stream")
    upload = gr.File(label="Upload", elem_id="upload")
    content = gr.Textbox(label="Content", elem_id="content")
    answer = gr.File(label="Answer file", elem_id="answer")
    gr.Button("Read file", elem_id="read").click(
        read_file, upload, [content, answer], api_name="read_file")

if __name__ == "__main__":
    demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), show_error=True)
