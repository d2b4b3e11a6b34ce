"""Everything between fedcore's dataclasses and bytes: tensor layout, chunking, proto conversion.

Only this package and `fedcore.transport` import the generated protobuf code.
"""
