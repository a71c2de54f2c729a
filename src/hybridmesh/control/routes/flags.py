"""placeholder"""

from hybridmesh.control.declare import Operations

operations = Operations()
