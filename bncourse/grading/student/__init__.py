"""The student's side of grading: the code that runs where the student's code runs.

A check is split in two. The part here makes the seeded inputs and runs the student's
function or class on them (``make_inputs`` and ``produce``), returning plain NumPy arrays;
it runs in the student's sandbox, so it imports nothing but the standard library, NumPy
(Keras and Matplotlib inside the ``produce`` functions of the sets that use them) and the
modules of this package: never a reference implementation, a judge or the grader. The other
part, the judges (:mod:`bncourse.grading.forward` and its siblings), compares those arrays
with the references in a process that ran no student code.
"""
