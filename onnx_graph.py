"""Fixes to the ONNX students paddle2onnx writes (runtimes.export_onnx applies them): LSTMs fed the lengths of the
sentences they read, and without the zero initial states built at every run."""
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from utils import UserError


def feed_lstm_lengths(graph):
    """paddle2onnx leaves the `sequence_lens` input of its LSTMs empty, so in a padded batch an LSTM runs over the
    padding of every shorter sentence (its backward direction even starts there): predictions flip. Feed each
    LSTM the lengths of the sentences it reads (the `lengths` input beside its `ids`), as int32."""
    producers = {output: node for node in graph.node for output in node.output}
    graph_inputs = {value.name for value in graph.input}

    def graph_inputs_under(name):
        found, seen, stack = set(), set(), [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in graph_inputs:
                found.add(current)
            elif current in producers:
                stack.extend(i for i in producers[current].input if i)
        return found

    nodes = []
    for node in graph.node:
        if node.op_type == "LSTM":
            ids = sorted(name for name in graph_inputs_under(node.input[0]) if name in ("ids", "ids2"))
            if len(ids) != 1:
                raise UserError(f"ONNX export: cannot tell which sentence LSTM {node.name} reads ({ids})")
            lengths = "lengths" + ids[0][len("ids"):]
            nodes.append(helper.make_node("Cast", [lengths], [f"{node.name}.sequence_lens"], to=TensorProto.INT32))
            inputs = list(node.input) + [""] * (5 - len(node.input))
            inputs[4] = f"{node.name}.sequence_lens"
            del node.input[:]
            node.input.extend(inputs)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def drop_zero_initial_states(graph):
    """paddle2onnx feeds each LSTM zero initial states that a dozen small operators build from the batch's shape at
    every run, a visible share of a one-sentence run; without them an LSTM starts from zeros all the same (ONNX's
    default). Drop the states that are zeros, and the operators left computing nothing."""
    constants = {value.name: numpy_helper.to_array(value) for value in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def zeros(name):  # built from all-zero constants by operators that keep zeros zero (their other inputs aside)
        node = producers.get(name)
        if node is None:
            return name in constants and not constants[name].any()
        if node.op_type == "Constant":  # how paddle2onnx writes constants
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return value is not None and not numpy_helper.to_array(value).any()
        if node.op_type == "Concat":
            return all(zeros(part) for part in node.input)
        return node.op_type in ("Expand", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity") and \
            zeros(node.input[0])

    dropped = False
    for node in graph.node:
        if node.op_type == "LSTM":
            for index in (5, 6):  # initial_h, initial_c
                if len(node.input) > index and node.input[index] and zeros(node.input[index]):
                    node.input[index], dropped = "", True
            while node.input and not node.input[-1]:
                node.input.pop()
    if not dropped:
        return
    needed, kept = {value.name for value in graph.output} | _subgraph_inputs(graph), []
    for node in reversed(graph.node):  # in topological order, so each node's consumers come first
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _subgraph_inputs(graph):
    """Every name the nodes of graph's subgraphs (If, Loop and Scan bodies) read, which may be its own values."""
    names = set()
    for node in graph.node:
        for attribute in node.attribute:
            bodies = [attribute.g] if attribute.type == AttributeProto.GRAPH else \
                list(attribute.graphs) if attribute.type == AttributeProto.GRAPHS else []
            for body in bodies:
                names |= {name for inner in body.node for name in inner.input} | _subgraph_inputs(body)
    return names
